/**
 * The floor under a checkout on this machine: what the pieces a checkout is made of cost when
 * none of our code runs, and so what the checkout would cost if ours cost nothing.
 *   - a message: a Moleculer call between two processes over RabbitMQ with this project's
 *     transporter, to an action that answers at once (two messages), 64 calls in flight;
 *   - a transaction: BEGIN, an insert, a read and an update of one small row, COMMIT, through
 *     `pg` on 16 connections (a checkout's transactions hold ≈ 2.7 statements each), and, as the
 *     least a transaction can cost, one read by key on its own;
 *   - a Redis command: a script that compares a version and sets a 3 KB record (the saga store's
 *     write), 64 in flight; Redis counts the script and each command inside it, and so does the
 *     checkout's count, so the cost is per command counted that way.
 * CPU is summed over every process the piece takes (the Node processes, RabbitMQ, Postgres,
 * Redis: every user of those servers), per piece, over BENCH_FLOOR_S (5) seconds each. Then
 * multiplied by what one checkout does: the messages delivered (heartbeats left out), the
 * transactions committed and the Redis commands of the newest `npm run bench` result in
 * bench/results that has them (or BENCH_FLOOR_MESSAGES, BENCH_FLOOR_TRANSACTIONS,
 * BENCH_FLOOR_REDIS). Needs the three servers (DATABASE_URL, REDIS_URL, AMQP_URL, or the
 * ones on 127.0.0.1); it writes only into a schema and keys of its own and drops them.
 *
 *   npm run bench:floor
 */
import { fork } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import Redis from "ioredis";
import pg from "pg";
import { benchBroker, CLK_TCK, pidsOf, redisCommandsProcessed, ticksSince, tickSnapshot } from "./processes";

const SECONDS = Number(process.env.BENCH_FLOOR_S ?? 5);
const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const RUN = process.argv[3] ?? `floor${process.pid}`;

if (process.argv[2] === "callee") {
	void benchBroker(RUN, "callee", "floor").then(() => process.send?.("ready"));
} else {
	main().catch(err => {
		console.error(err);
		process.exit(1);
	});
}

/** Runs `once` from `inFlight` loops for SECONDS; answers the pieces done and the CPU (ms) the pids spent per piece. */
async function perPiece(pids: () => number[], inFlight: number, once: (worker: number) => Promise<unknown>) {
	for (let w = 0; w < inFlight; w++) for (let i = 0; i < 20; i++) await once(w); // warm
	const before = tickSnapshot(pids());
	const until = performance.now() + SECONDS * 1000;
	let done = 0;
	await Promise.all(
		Array.from({ length: inFlight }, async (_, w) => {
			while (performance.now() < until) {
				await once(w);
				done++;
			}
		})
	);
	return { done, cpuMs: (ticksSince(before, pids()) / CLK_TCK) * 1000 / done, perSecond: done / SECONDS };
}

/** Per checkout, from the newest bench result that counted it (the first configuration's saturation phase). */
function checkoutCounts() {
	const fromEnv = (k: string) => (process.env[k] ? Number(process.env[k]) : null);
	const dir = path.join(__dirname, "results");
	let found: { file: string; messages: number; transactions: number; redis: number | null } | null = null;
	for (const file of readdirSync(dir).filter(f => f.endsWith(".json")).sort().reverse()) {
		const work = JSON.parse(readFileSync(path.join(dir, file), "utf8")).configurations?.[0]?.saturation?.work;
		if (!work?.rabbitmqDeliveredPerCheckout || !work.postgresCommitsPerCheckout) continue;
		const heartbeats = Object.entries(work.deliveredByQueue ?? {}).reduce((a, [q, n]) => a + (q.startsWith("MOL.HEARTBEAT") ? Number(n) : 0), 0);
		found = { file, messages: work.rabbitmqDeliveredPerCheckout - heartbeats, transactions: work.postgresCommitsPerCheckout, redis: work.redisCommandsPerCheckout ?? null };
		break;
	}
	return {
		from: found?.file ?? "(no bench result)",
		messages: fromEnv("BENCH_FLOOR_MESSAGES") ?? found?.messages ?? 42,
		transactions: fromEnv("BENCH_FLOOR_TRANSACTIONS") ?? found?.transactions ?? 42,
		// Results from before the bench counted Redis commands: ≈ 79 a checkout, as the bench of 2026-12-08 counted them.
		redis: fromEnv("BENCH_FLOOR_REDIS") ?? found?.redis ?? 79
	};
}

const CAS = `local v = redis.call('HGET', KEYS[1], 'v')
if v == ARGV[1] then redis.call('HSET', KEYS[1], 'v', ARGV[2], 'json', ARGV[3]) redis.call('PEXPIRE', KEYS[1], 600000) return 1 end
return 0`;

async function main() {
	const counts = checkoutCounts();
	const r = (n: number, d = 3) => n.toFixed(d);
	console.log(`The floor under a checkout: each piece alone, with many in flight, CPU over every process it takes (${SECONDS} s each).`);

	// A message: half a Moleculer call.
	const callee = fork(__filename, ["callee", RUN], { env: { ...process.env }, execArgv: process.execArgv });
	await new Promise(resolve => callee.once("message", resolve));
	const broker = await benchBroker(RUN, "caller");
	await broker.waitForServices(["floor"], 30_000);
	const calls = await perPiece(() => [process.pid, callee.pid!, ...pidsOf("beam.smp")], 64, () => broker.call("floor.ping"));
	await broker.stop();
	callee.kill("SIGTERM");
	const message = calls.cpuMs / 2;
	console.log(`  Moleculer call over RabbitMQ      ${r(calls.cpuMs)} ms of CPU a call (${Math.round(calls.perSecond)}/s) → ${r(message)} ms a message`);

	// A transaction.
	const schema = `floor_${process.pid}`;
	const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 16 });
	await pool.query(`CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.t (id bigserial PRIMARY KEY, v text NOT NULL)`);
	const tx = await (async () => {
		try {
			return await perPiece(() => [process.pid, ...pidsOf("postgres")], 16, async () => {
				const c = await pool.connect();
				try {
					await c.query("BEGIN");
					const { rows } = await c.query({ name: "ins", text: `INSERT INTO ${schema}.t (v) VALUES ($1) RETURNING id`, values: ["a"] });
					await c.query({ name: "sel", text: `SELECT v FROM ${schema}.t WHERE id = $1`, values: [rows[0].id] });
					await c.query({ name: "upd", text: `UPDATE ${schema}.t SET v = $2 WHERE id = $1`, values: [rows[0].id, "b"] });
					await c.query("COMMIT");
				} finally {
					c.release();
				}
			});
		} finally {
			await pool.query(`DROP SCHEMA ${schema} CASCADE`);
			await pool.end();
		}
	})();
	console.log(`  Postgres transaction, 5 round trips ${r(tx.cpuMs)} ms of CPU a transaction (${Math.round(tx.perSecond)}/s)`);
	// The cheapest a commit can be: one read by key, committed on its own (Postgres counts it as a transaction too).
	const pool1 = new pg.Pool({ connectionString: DATABASE_URL, max: 16 });
	const one = await perPiece(() => [process.pid, ...pidsOf("postgres")], 16, () => pool1.query({ name: "one", text: "SELECT oid FROM pg_class WHERE relname = $1", values: ["pg_type"] }));
	await pool1.end();
	console.log(`  Postgres, one read on its own     ${r(one.cpuMs)} ms of CPU a statement (${Math.round(one.perSecond)}/s)`);

	// A Redis command: the saga store's compare-and-set of a 3 KB record.
	const redis = new Redis(REDIS_URL);
	const record = JSON.stringify({ data: "x".repeat(3000) });
	const versions = new Array(64).fill(0);
	const key = (w: number) => `${RUN}:saga:${w}`;
	const commandsSoFar = async () => (await redisCommandsProcessed(redis)) ?? NaN;
	const commands0 = await commandsSoFar();
	const cas = await (async () => {
		try {
			return await perPiece(() => [process.pid, ...pidsOf("redis-server")], 64, async w => {
				const ok = await redis.eval(CAS, 1, key(w), String(versions[w]), String(versions[w] + 1), record);
				if (ok === 1) versions[w]++;
				else versions[w] = Number(await redis.hget(key(w), "v") ?? 0);
			});
		} finally {
			await redis.del(...versions.map((_, w) => key(w)));
		}
	})();
	// Redis counts a script and every command inside it, and so does the checkout bench's count: per command, counted alike.
	const commandsPerScript = (await commandsSoFar() - commands0) / cas.done;
	redis.disconnect();
	const command = cas.cpuMs / commandsPerScript;
	console.log(`  Redis compare-and-set script      ${r(cas.cpuMs)} ms of CPU a script (${Math.round(cas.perSecond)}/s) → ${r(command)} ms a command (${r(commandsPerScript, 1)} commands a script, as Redis counts them)`);

	const messages = counts.messages * message;
	const redisMs = counts.redis * command;
	const floor = messages + counts.transactions * tx.cpuMs + redisMs;
	const lowest = messages + counts.transactions * one.cpuMs + redisMs;
	console.log(`A checkout (${counts.from}): ${r(counts.messages, 1)} messages delivered (heartbeats left out), ${r(counts.transactions, 1)} transactions, ${r(counts.redis, 1)} Redis commands`);
	console.log(`  messages + transactions + Redis = ${r(messages, 1)} + ${r(counts.transactions * tx.cpuMs, 1)} + ${r(redisMs, 1)} = ${r(floor, 1)} ms of CPU if our code cost nothing → at most ${Math.round(2000 / floor)} checkouts/s on 2 cores`);
	console.log(`  the same with every transaction a single read: ${r(messages, 1)} + ${r(counts.transactions * one.cpuMs, 1)} + ${r(redisMs, 1)} = ${r(lowest, 1)} ms → at most ${Math.round(2000 / lowest)}/s; the messages alone: at most ${Math.round(2000 / messages)}/s`);
}
