/**
 * Global fixtures (run once by mocha's main process, also under `--parallel`): make sure the test
 * database exists before the run; afterwards drop the schemas, Redis keys and RabbitMQ
 * queues/exchanges of this run and of each of its workers, so the servers stay clean.
 */
import knexFactory from "knex";
import Redis from "ioredis";
import { nextRedisDatabase } from "../../infra/settings";
import amqp from "amqplib";

/** The run's base id: every worker's namespace, schemas and keys start with it. */
const run = process.env.TEST_RUN_BASE ?? process.env.TEST_RUN_ID!;

export async function mochaGlobalSetup() {
	await ensureDatabase();
}

export async function mochaGlobalTeardown() {
	if (process.env.KEEP_TEST_DATA) return;
	await cleanup().catch(err => console.warn("cleanup after tests failed:", err.message));
}

/** Creates the test database (DATABASE_URL's) when the server does not have it yet. */
export async function ensureDatabase(): Promise<void> {
	const url = new URL(process.env.DATABASE_URL!);
	const dbName = url.pathname.slice(1);
	const admin = knexFactory({ client: "pg", connection: process.env.TEST_DATABASE_ADMIN_URL });
	try {
		const exists = await admin.raw("SELECT 1 FROM pg_database WHERE datname = ?", [dbName]);
		if (exists.rows.length === 0) await admin.raw("CREATE DATABASE ??", [dbName]).catch(() => undefined);
	} finally {
		await admin.destroy();
	}
}

export async function cleanup(): Promise<void> {
	const db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
	try {
		const schemas = await db.raw("SELECT nspname FROM pg_namespace WHERE nspname LIKE ?", [`${run}%\\_%`]);
		for (const { nspname } of schemas.rows) await db.raw("DROP SCHEMA IF EXISTS ?? CASCADE", [nspname]);
	} finally {
		await db.destroy();
	}
	// The sagas' database and the catalog cache's (the next one: infra/settings.ts).
	for (const url of [process.env.REDIS_URL!, process.env.CACHE_REDIS_URL || nextRedisDatabase(process.env.REDIS_URL!)]) {
		const redis = new Redis(url);
		try {
			let cursor = "0";
			do {
				const [next, keys] = await redis.scan(cursor, "MATCH", `${run}*:*`, "COUNT", 1000);
				if (keys.length) await redis.del(...keys);
				cursor = next;
			} while (cursor !== "0");
		} finally {
			redis.disconnect();
		}
	}
	// Queues and exchanges of this run: their names carry the namespace.
	const res = await fetch("http://127.0.0.1:15672/api/queues", { headers: { authorization: "Basic " + Buffer.from("guest:guest").toString("base64") } }).catch(() => null);
	const conn = await amqp.connect(process.env.TRANSPORTER!);
	try {
		const ch = await conn.createChannel();
		ch.on("error", () => undefined);
		if (res && res.ok) {
			const queues: Array<{ name: string }> = (await res.json()) as any;
			for (const q of queues.filter(q => q.name.includes(run))) await ch.deleteQueue(q.name).catch(() => undefined);
		}
		const ex = await fetch("http://127.0.0.1:15672/api/exchanges", { headers: { authorization: "Basic " + Buffer.from("guest:guest").toString("base64") } }).catch(() => null);
		if (ex && ex.ok) {
			const exchanges: Array<{ name: string }> = (await ex.json()) as any;
			for (const e of exchanges.filter(e => e.name.includes(run))) await ch.deleteExchange(e.name).catch(() => undefined);
		}
	} finally {
		await conn.close().catch(() => undefined);
	}
}
