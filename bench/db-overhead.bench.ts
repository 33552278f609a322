/**
 * What our data access costs in the Node process on top of Postgres's own work: the same
 * statement and the same transaction through `pg` directly, through knex's raw queries and through
 * knex's builder and `knex.transaction` (what the services use). CPU is the process's own
 * (`process.cpuUsage`, user + system) per statement or transaction, after a warm-up; three rounds,
 * because this machine varies from run to run. Needs only a PostgreSQL server (DATABASE_URL, or
 * the one on 127.0.0.1:5432); it reads the catalog tables and writes nothing.
 *
 *   npm run bench:db
 */
import knexFactory, { Knex } from "knex";
import pg from "pg";

const url = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const N = Number(process.env.BENCH_DB_N ?? 3000);
const SQL = "SELECT oid, relname, relkind FROM pg_class WHERE relname = $1 LIMIT 1";
/** The same statement in knex's placeholders. */
const KNEX_SQL = SQL.replace("$1", "?");

async function measure(what: string, once: () => Promise<unknown>) {
	for (let i = 0; i < 500; i++) await once();
	const cpu0 = process.cpuUsage();
	const t0 = process.hrtime.bigint();
	for (let i = 0; i < N; i++) await once();
	const cpu = process.cpuUsage(cpu0);
	const wallUs = Number(process.hrtime.bigint() - t0) / 1000 / N;
	const cpuUs = (cpu.user + cpu.system) / N;
	console.log(`  ${what.padEnd(58)} CPU ${cpuUs.toFixed(0).padStart(5)} µs   wall ${wallUs.toFixed(0).padStart(5)} µs`);
}

async function main() {
	const client = new pg.Client(url);
	await client.connect();
	const knex: Knex = knexFactory({ client: "pg", connection: url, pool: { min: 1, max: 1 } });
	try {
		for (let round = 1; round <= 3; round++) {
			console.log(`round ${round} (${N} each, one connection, nothing else running):`);
			await measure("one statement: pg", () => client.query(SQL, ["pg_type"]));
			await measure("one statement: knex.raw", () => knex.raw(KNEX_SQL, ["pg_type"]));
			await measure("one statement: knex builder (.where().first())", () => knex.table("pg_class").select("oid", "relname", "relkind").where({ relname: "pg_type" }).first());
			await measure("transaction of one statement: pg BEGIN / query / COMMIT", async () => {
				await client.query("BEGIN");
				await client.query(SQL, ["pg_type"]);
				await client.query("COMMIT");
			});
			await measure("transaction of one statement: knex.transaction + trx.raw", () => knex.transaction(trx => trx.raw(KNEX_SQL, ["pg_type"])));
		}
	} finally {
		await client.end();
		await knex.destroy();
	}
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
