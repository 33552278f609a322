/**
 * The db mixin's transaction on PostgreSQL: BEGIN … COMMIT on one pooled connection instead of
 * knex.transaction (knex's costs ≈ 280 µs of CPU more, `npm run bench:db`). What it must keep of
 * knex's: every statement of `fn` in the one transaction, builder and raw alike; a failure rolls
 * all of it back and gives the connection back; `executionPromise` settles at commit or rollback
 * (the outbox publishes on it); a prepared statement gone stale fails the transaction as a whole,
 * so that `retryStalePlan` runs it again.
 */
import { expect } from "chai";
import type { Knex } from "knex";
import { acquireKnex, releaseKnex, retryStalePlan } from "../../infra/database";
import { readSettings } from "../../infra/settings";
import { onConnection, tableIn, type Trx } from "../../mixins/db.mixin";

describe("the db mixin's transaction on one connection (real Postgres)", function () {
	this.timeout(60_000);
	// A knex of its own with ONE connection: a connection not given back would make the next transaction wait for ever.
	const url = new URL(process.env.DATABASE_URL!);
	url.searchParams.set("application_name", "db-transaction-test");
	const settings = { ...readSettings(), databaseUrl: url.toString(), dbPoolMax: 1 };
	const schema = `${process.env.SCHEMA_PREFIX}dbtx`;
	let knex: Knex;
	let other: Knex;
	const rows = async () => (await other.withSchema(schema).table("items").orderBy("id")).map((r: any) => r.id as number);

	before(async () => {
		knex = acquireKnex(settings);
		const { default: knexFactory } = await import("knex");
		other = knexFactory({ client: "pg", connection: process.env.DATABASE_URL, pool: { min: 0, max: 2 } });
		await other.raw("DROP SCHEMA IF EXISTS ?? CASCADE", [schema]);
		await other.raw("CREATE SCHEMA ??", [schema]);
		await other.raw("CREATE TABLE ??.items (id int PRIMARY KEY, name text)", [schema]);
	});
	after(async () => {
		await other.raw("DROP SCHEMA IF EXISTS ?? CASCADE", [schema]);
		await other.destroy();
		await releaseKnex(settings);
	});

	it("builder and raw statements run in one transaction, seen by nobody else until it commits", async () => {
		let seenInside: number[] = [];
		let seenOutside: number[] = [];
		const ids = await onConnection(knex, async trx => {
			const a = (await trx.raw("SELECT txid_current() AS id")).rows[0].id;
			await tableIn(knex, schema, "items", trx).insert({ id: 1, name: "one" });
			await trx.raw("INSERT INTO ??.items VALUES (?, ?)", [schema, 2, "two"]);
			seenInside = (await tableIn(knex, schema, "items", trx).orderBy("id")).map((r: any) => r.id);
			seenOutside = await rows();
			const b = (await trx.raw("SELECT txid_current() AS id")).rows[0].id;
			return [a, b];
		});
		expect(ids[0]).to.equal(ids[1]);
		expect(seenInside).to.deep.equal([1, 2]);
		expect(seenOutside).to.deep.equal([]);
		expect(await rows()).to.deep.equal([1, 2]);
	});

	it("a failure rolls every statement back and gives the connection back; executionPromise says which", async () => {
		await other.withSchema(schema).table("items").delete();
		const settled: string[] = [];
		for (let i = 0; i < 20; i++) {
			const refused = await onConnection(knex, async trx => {
				(trx as any).executionPromise.then(() => settled.push("committed"), () => settled.push("rolled back"));
				await tableIn(knex, schema, "items", trx).insert({ id: 100 + i, name: "kept?" });
				if (i % 2 === 0) throw new Error("refused by the caller");
				await trx.raw("INSERT INTO ??.items VALUES (?, ?)", [schema, 100 + i, "duplicate"]); // a refusal of Postgres
			}).then(() => null, (err: Error) => err.message);
			expect(refused, `transaction ${i}`).to.match(i % 2 === 0 ? /refused by the caller/ : /duplicate key/);
		}
		expect(await rows()).to.deep.equal([]);
		// The one connection came back every time: a transaction after them runs and commits.
		await onConnection(knex, async trx => {
			(trx as any).executionPromise.then(() => settled.push("committed"));
			await tableIn(knex, schema, "items", trx).insert({ id: 7, name: "seven" });
		});
		await new Promise(r => setImmediate(r));
		expect(await rows()).to.deep.equal([7]);
		expect(settled).to.deep.equal([...Array(20).fill("rolled back"), "committed"]);
	});

	it("a prepared statement gone stale fails the transaction whole, and retryStalePlan runs it again", async () => {
		const row = (trx: Trx) => tableIn(knex, schema, "items", trx).where({ id: 7 }).first();
		expect(await onConnection(knex, row)).to.deep.equal({ id: 7, name: "seven" });
		await other.raw("ALTER TABLE ??.items ADD COLUMN size int", [schema]);
		let runs = 0;
		const answer = await retryStalePlan(() => onConnection(knex, trx => (runs++, row(trx))));
		expect(answer).to.deep.equal({ id: 7, name: "seven", size: null });
		expect(runs).to.equal(2);
	});
});
