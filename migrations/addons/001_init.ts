import { Knex } from "knex";

export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("addons", t => {
		t.uuid("id").primary();
		t.string("name", 100).notNullable();
		t.string("description", 1000).notNullable().defaultTo("");
		t.bigInteger("price_amount").notNullable();
		t.string("currency", 3).notNullable();
		t.jsonb("product_ids").notNullable().defaultTo("[]");
		t.jsonb("category_ids").notNullable().defaultTo("[]");
		t.boolean("active").notNullable().defaultTo(true);
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	await knex.raw(`CREATE UNIQUE INDEX addons_name_unique ON ??.addons (lower(name))`, [schema]);
	await knex.raw(`ALTER TABLE ??.addons ADD CONSTRAINT addons_price_not_negative CHECK (price_amount >= 0)`, [schema]);
	// The last availability each checkout was told: a recalculation with the same answer records nothing.
	await knex.schema.withSchema(schema).createTable("checkout_availability", t => {
		t.uuid("checkout_id").primary();
		t.string("cart_hash", 64).notNullable();
		t.string("answer_hash", 64).notNullable();
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("checkout_availability").dropTable("addons");
}
