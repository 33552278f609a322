import { Knex } from "knex";

export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("methods", t => {
		t.uuid("id").primary();
		t.string("name", 100).notNullable();
		t.string("carrier", 100).notNullable();
		t.bigInteger("price_amount").notNullable();
		t.string("currency", 3).notNullable();
		t.bigInteger("free_over_amount");
		t.jsonb("countries").notNullable();
		t.integer("delivery_min").notNullable();
		t.integer("delivery_max").notNullable();
		t.bigInteger("express_fee_amount");
		t.boolean("active").notNullable().defaultTo(true);
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	await knex.raw(`CREATE UNIQUE INDEX methods_name_unique ON ??.methods (lower(name))`, [schema]);
	await knex.raw(
		`ALTER TABLE ??.methods ADD CONSTRAINT methods_sane CHECK (price_amount >= 0 AND (free_over_amount IS NULL OR free_over_amount >= 0)
		 AND (express_fee_amount IS NULL OR express_fee_amount >= 0) AND delivery_min >= 0 AND delivery_max >= delivery_min)`,
		[schema]
	);
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("methods");
}
