/**
 * The database client sends statements with parameters as named (prepared) statements, so
 * Postgres parses and plans each text once per connection; a connection keeps a bounded number
 * of them; statements without parameters keep the simple protocol (several at once still work);
 * a migration of another process that changes what a prepared `SELECT *` answers (a rolling
 * update) costs the caller nothing.
 */
import { expect } from "chai";
import type { Knex } from "knex";
import { acquireKnex, isStalePlan, PREPARED_PER_CONNECTION, releaseKnex, retryStalePlan } from "../../infra/database";
import { readSettings } from "../../infra/settings";

describe("prepared statements (real Postgres)", function () {
	this.timeout(60_000);
	// A URL of its own: a knex of its own (they are shared per URL), with one connection.
	const url = new URL(process.env.DATABASE_URL!);
	url.searchParams.set("application_name", "prepared-statements-test");
	const settings = { ...readSettings(), databaseUrl: url.toString(), dbPoolMax: 1 };
	let knex: Knex;
	// One connection: what it has prepared is what pg_prepared_statements shows.
	const prepared = async (): Promise<string[]> => (await knex.raw("SELECT statement FROM pg_prepared_statements")).rows.map((r: any) => r.statement as string);

	// Another process's connection, as a replica that migrates while this one serves.
	let other: Knex;
	const schema = `${process.env.SCHEMA_PREFIX}prepared`;

	before(async () => {
		knex = acquireKnex(settings);
		const { default: knexFactory } = await import("knex");
		other = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
		await other.raw("CREATE SCHEMA IF NOT EXISTS ??", [schema]);
	});
	after(async () => {
		await other.raw("DROP SCHEMA IF EXISTS ?? CASCADE", [schema]);
		await other.destroy();
		await releaseKnex(settings);
	});

	it("prepares a statement with parameters once and reuses it; one without parameters is not prepared", async () => {
		for (let i = 0; i < 3; i++) expect((await knex.raw("SELECT ?::int * 2 AS doubled", [i])).rows[0].doubled).to.equal(i * 2);
		await knex.raw("SELECT 41 + 1 AS answer");
		const statements = await prepared();
		expect(statements.filter(s => s === "SELECT $1::int * 2 AS doubled")).to.have.length(1);
		expect(statements.some(s => s.includes("41 + 1"))).to.equal(false);
		// Several statements in one text, without parameters, as migrations send them.
		const out = await knex.raw("SELECT 1 AS a; SELECT 2 AS b");
		expect(out.map((r: any) => r.rows[0])).to.deep.equal([{ a: 1 }, { b: 2 }]);
	});

	it("keeps at most PREPARED_PER_CONNECTION statements on a connection; the rest still answer, unprepared", async () => {
		for (let i = 0; i < PREPARED_PER_CONNECTION + 30; i++) {
			expect((await knex.raw(`SELECT ?::int + ${i} AS n`, [1])).rows[0].n).to.equal(1 + i);
		}
		const statements = await prepared();
		expect(statements.length).to.be.at.most(PREPARED_PER_CONNECTION);
		expect(statements.filter(s => /^SELECT \$1::int \+ \d+ AS n$/.test(s)).length).to.be.above(PREPARED_PER_CONNECTION - 10);
		// One prepared earlier is still used, not refused as a duplicate.
		expect((await knex.raw("SELECT ?::int * 2 AS doubled", [21])).rows[0].doubled).to.equal(42);
	});

	it("a column added by another process under a prepared SELECT *: the next call answers with it, outside a transaction and in one (run again)", async () => {
		// A fresh connection: the test before filled this one's prepared statements to the cap.
		await releaseKnex(settings);
		knex = acquireKnex(settings);
		await other.raw("CREATE TABLE ??.items (id int PRIMARY KEY, name text)", [schema]);
		await other.raw("INSERT INTO ??.items VALUES (1, 'one')", [schema]);
		const row = (trx?: Knex.Transaction) => (trx ?? knex).withSchema(schema).table("items").where({ id: 1 }).first();
		expect(await row()).to.deep.equal({ id: 1, name: "one" });
		await knex.transaction(trx => row(trx));

		await other.raw("ALTER TABLE ??.items ADD COLUMN size int", [schema]);
		expect(await row()).to.deep.equal({ id: 1, name: "one", size: null });

		// In a transaction the refusal aborts it: Postgres refuses the stale plan…
		await other.raw("ALTER TABLE ??.items ADD COLUMN colour text", [schema]);
		const refused = await knex.transaction(trx => row(trx)).then(() => null, (err: unknown) => err);
		expect(isStalePlan(refused), String(refused)).to.equal(true);
		// …and a transaction run through retryStalePlan (the db mixin's) runs once more and answers.
		expect(await row()).to.deep.equal({ id: 1, name: "one", size: null, colour: null });
		await other.raw("ALTER TABLE ??.items ADD COLUMN weight int", [schema]);
		let runs = 0;
		const answer = await retryStalePlan(() => knex.transaction(trx => (runs++, row(trx))));
		expect(answer).to.deep.equal({ id: 1, name: "one", size: null, colour: null, weight: null });
		expect(runs).to.equal(2);
	});
});
