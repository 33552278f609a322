/**
 * One knex per process and database, shared by the services the process runs: PGlite has a
 * single connection, and a pool per service would only multiply connections to Postgres.
 * Each service reaches only its own schema through the db mixin.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import knexFactory, { Knex } from "knex";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const KnexPgClient: new (config: Knex.Config) => any = require("knex/lib/dialects/postgres");
import { Settings } from "./settings";

/** Named statements one connection keeps at most; statements past it are sent unnamed (parsed each time). */
export const PREPARED_PER_CONNECTION = 100;
const PREPARED = Symbol("preparedStatements");
const names = new Map<string, string>();
/** Texts whose prepared plan went stale (a migration changed a table under them): how many times. */
const generations = new Map<string, number>();

/**
 * knex's Postgres client, with every statement that has parameters sent as a named (prepared)
 * statement: Postgres parses and plans it once per connection instead of at every call (pgbench
 * here: 2,000–2,200 transactions/s unnamed, 2,500–3,100 prepared). A connection keeps at most
 * PREPARED_PER_CONNECTION of them (a `whereIn` of every length is a text of its own, and each plan
 * takes memory in its backend); the rest go unnamed as before. Statements without parameters
 * (BEGIN, COMMIT, a migration's several statements at once) keep the simple protocol.
 *
 * A migration run by another process (a rolling update: the new version migrates while the old
 * one still serves) can change the rows a prepared `SELECT *` or `RETURNING *` answers; Postgres
 * then refuses the statement ("cached plan must not change result type"). Its text is then
 * prepared afresh under a new name on every connection; a statement outside a transaction is sent
 * again at once, and a transaction of the db mixin runs once more (`retryStalePlan`).
 */
class PreparingPgClient extends KnexPgClient {
	async _query(connection: any, obj: any) {
		const named = nameStatement(connection, obj);
		try {
			return await super._query(connection, obj);
		} catch (err) {
			if (!named || !isStalePlan(err)) throw err;
			generations.set(obj.sql, (generations.get(obj.sql) ?? 0) + 1);
			names.delete(obj.sql);
			if (connection.__knexTxId !== undefined) throw err; // the transaction is aborted: it runs again as a whole
			delete obj.options.name;
			nameStatement(connection, obj);
			return super._query(connection, obj);
		}
	}
}

/** Gives `obj` the name of its text, if it has parameters and its connection may keep one more; answers whether it did. */
function nameStatement(connection: any, obj: any): boolean {
	if (!obj.sql || !(obj.bindings?.length > 0) || obj.options?.name !== undefined) return false;
	const name = statementName(obj.sql);
	const parsed = connection.connection?.parsedStatements ?? {};
	const kept: number = connection[PREPARED] ?? 0;
	if (parsed[name] === undefined && kept >= PREPARED_PER_CONNECTION) return false;
	if (parsed[name] === undefined) connection[PREPARED] = kept + 1;
	obj.options = { ...obj.options, name };
	return true;
}

function statementName(sql: string): string {
	let name = names.get(sql);
	if (name === undefined) {
		const generation = generations.get(sql);
		name = `sc_${createHash("sha1").update(sql).digest("hex").slice(0, 20)}${generation ? `_${generation}` : ""}`;
		if (names.size >= 5000) names.clear();
		names.set(sql, name);
	}
	return name;
}

/** Postgres refused a prepared statement whose tables a migration changed since it was prepared. */
export function isStalePlan(err: unknown): boolean {
	const e = err as { code?: string; message?: string } | null;
	return e?.code === "0A000" && /cached plan must not change result type/.test(e.message ?? "");
}

/** Runs a transaction once more when a prepared statement in it went stale (it was rolled back whole). */
export async function retryStalePlan<T>(run: () => Promise<T>): Promise<T> {
	try {
		return await run();
	} catch (err) {
		if (!isStalePlan(err)) throw err;
		return run();
	}
}

const shared = new Map<string, { knex: Knex; refs: number }>();

function createKnex(s: Settings): Knex {
	if (s.databaseUrl) {
		return knexFactory({
			client: PreparingPgClient as any,
			connection: s.databaseUrl,
			pool: { min: 0, max: s.dbPoolMax }
		});
	}
	fs.mkdirSync(s.dataDir, { recursive: true });
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const ClientPgLite = require("knex-pglite");
	return knexFactory({ client: ClientPgLite, dialect: "postgres", connection: { filename: path.join(s.dataDir, "pglite") } });
}

export function acquireKnex(s: Settings): Knex {
	const key = s.databaseUrl ?? `pglite:${s.dataDir}`;
	let entry = shared.get(key);
	if (!entry) {
		entry = { knex: createKnex(s), refs: 0 };
		shared.set(key, entry);
	}
	entry.refs++;
	return entry.knex;
}

export async function releaseKnex(s: Settings): Promise<void> {
	const key = s.databaseUrl ?? `pglite:${s.dataDir}`;
	const entry = shared.get(key);
	if (!entry) return;
	if (--entry.refs <= 0) {
		shared.delete(key);
		await entry.knex.destroy();
	}
}

interface MigrationModule {
	up(knex: Knex, schema: string): Promise<void>;
	down?(knex: Knex, schema: string): Promise<void>;
}

/** Migrations of one schema: the messaging tables every service has, then its own folder. */
function migrationSource(service: string, schema: string): Knex.MigrationSource<string> {
	const root = path.join(__dirname, "..", "migrations");
	const files = [
		...listMigrations(path.join(root, "common")).map(f => path.join("common", f)),
		...listMigrations(path.join(root, service)).map(f => path.join(service, f))
	];
	return {
		getMigrations: async () => files,
		getMigrationName: f => f.replace(/\\/g, "/").replace(/\.[tj]s$/, ""),
		getMigration: async f => {
			// eslint-disable-next-line @typescript-eslint/no-require-imports
			const mod: MigrationModule = require(path.join(root, f));
			return {
				up: (k: Knex) => mod.up(k, schema),
				down: (k: Knex) => (mod.down ? mod.down(k, schema) : Promise.resolve())
			};
		}
	};
}

function listMigrations(dir: string): string[] {
	if (!fs.existsSync(dir)) return [];
	return fs
		.readdirSync(dir)
		.filter(f => /^\d+.*\.(ts|js)$/.test(f) && !f.endsWith(".d.ts"))
		.sort();
}

/**
 * Creates the schema and runs its migrations; safe when several processes start at once.
 * On Postgres, the processes take turns through an advisory lock held on a connection of its
 * own (the pool may be busy with other services' migrations): the lock is Postgres', so it goes
 * away with a process that dies mid-migration, and knex's own lock row, which would not, is
 * known to be stale whenever this process holds the advisory lock.
 */
export async function migrate(knex: Knex, service: string, schema: string): Promise<void> {
	const config = { schemaName: schema, tableName: "knex_migrations", migrationSource: migrationSource(service, schema) };
	if (!(knex.client instanceof PreparingPgClient)) {
		await knex.raw(`CREATE SCHEMA IF NOT EXISTS ??`, [schema]);
		await knex.migrate.latest(config);
		return;
	}
	// One connection (pool of one), so the lock is taken and held on the same session.
	const lock = knexFactory({ client: "pg", connection: knex.client.config.connection, pool: { min: 1, max: 1 } });
	try {
		await lock.raw("SELECT pg_advisory_lock(hashtext(?))", [`saga-commerce:migrate:${schema}`]);
		await knex.raw(`CREATE SCHEMA IF NOT EXISTS ??`, [schema]);
		await knex.migrate.forceFreeMigrationsLock(config);
		await knex.migrate.latest(config);
	} finally {
		await lock.destroy().catch(() => undefined);
	}
}
