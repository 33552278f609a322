import { Knex } from "knex";

export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("categories", t => {
		t.uuid("id").primary();
		t.string("name", 100).notNullable();
		t.uuid("parent_id").references("id").inTable(`${schema}.categories`);
		t.integer("depth").notNullable();
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	await knex.raw(`CREATE UNIQUE INDEX categories_name_unique ON ??.categories (lower(name))`, [schema]);
	await knex.raw(`ALTER TABLE ??.categories ADD CONSTRAINT categories_depth CHECK (depth BETWEEN 1 AND 3)`, [schema]);
	await knex.schema.withSchema(schema).createTable("products", t => {
		t.uuid("id").primary();
		t.string("sku", 100).notNullable().unique();
		t.string("name", 200).notNullable();
		t.text("description").notNullable().defaultTo("");
		t.bigInteger("price_amount").notNullable();
		t.string("price_currency", 3).notNullable();
		t.uuid("category_id").notNullable().references("id").inTable(`${schema}.categories`);
		t.uuid("vendor_id");
		t.string("status", 20).notNullable().defaultTo("draft"); // draft | active | inactive | deleted
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.index(["status", "created_at"]);
	});
	await knex.raw(`ALTER TABLE ??.products ADD CONSTRAINT products_price_not_negative CHECK (price_amount >= 0)`, [schema]);
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("products").dropTable("categories");
}
