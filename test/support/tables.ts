/**
 * A fingerprint of every row of every table of this run's schemas: one md5 per table over its
 * rows' text. Equal fingerprints before and after mean no row was added, removed or changed.
 */
import type { Knex } from "knex";

export async function snapshotTables(db: Knex, prefix = process.env.SCHEMA_PREFIX!): Promise<Record<string, string>> {
	const tables = await db.raw(
		`SELECT table_schema, table_name FROM information_schema.tables
		 WHERE table_schema LIKE ? AND table_type = 'BASE TABLE' AND table_name NOT LIKE 'knex\\_%' ORDER BY 1, 2`,
		[`${prefix.replace(/_/g, "\\_")}%`]
	);
	const out: Record<string, string> = {};
	for (const t of tables.rows) {
		const r = await db.raw(`SELECT count(*)::int AS n, coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') AS sum FROM ??.?? x`, [t.table_schema, t.table_name]);
		out[`${t.table_schema}.${t.table_name}`] = `${r.rows[0].n}:${r.rows[0].sum}`;
	}
	return out;
}
