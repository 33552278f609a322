/**
 * The database client sends statements with parameters as named (prepared) statements, so
 * Postgres parses and plans each text once per connection; a connection keeps a bounded number
 * of them; statements without parameters keep the simple protocol (several at once still work).
 */
import { expect } from "chai";
import type { Knex } from "knex";
import { acquireKnex, PREPARED_PER_CONNECTION, releaseKnex } from "../../infra/database";
import { readSettings } from "../../infra/settings";

describe("prepared statements (real Postgres)", function () {
	this.timeout(60_000);
	const settings = { ...readSettings(), databaseUrl: process.env.DATABASE_URL!, dbPoolMax: 1 };
	let knex: Knex;
	// One connection: what it has prepared is what pg_prepared_statements shows.
	const prepared = async (): Promise<string[]> => (await knex.raw("SELECT statement FROM pg_prepared_statements")).rows.map((r: any) => r.statement as string);

	before(() => {
		knex = acquireKnex(settings);
	});
	after(() => releaseKnex(settings));

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
});
