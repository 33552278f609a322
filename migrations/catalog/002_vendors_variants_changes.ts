import { Knex } from "knex";

/**
 * Vendors; category names unique among siblings (not shop-wide); product variants with their
 * own SKUs; soft delete; prices of at least one minor unit; the change log of every product;
 * and the catalog's own copy of available stock per SKU, kept from inventory's events.
 */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("vendors", t => {
		t.uuid("id").primary();
		t.string("name", 200).notNullable();
		t.string("email", 320).notNullable();
		t.string("phone", 30);
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	await knex.raw(`CREATE UNIQUE INDEX vendors_name_unique ON ??.vendors (lower(name))`, [schema]);

	await knex.raw(`DROP INDEX IF EXISTS ??.categories_name_unique`, [schema]);
	await knex.raw(`CREATE UNIQUE INDEX categories_name_unique_among_siblings ON ??.categories (coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name))`, [schema]);

	await knex.schema.withSchema(schema).alterTable("products", t => {
		t.timestamp("deleted_at", { useTz: true });
		t.uuid("deleted_by");
		t.index(["category_id"]);
		t.index(["vendor_id"]);
	});
	// Rows written before this rule keep their price; every new or changed price is at least 0.01.
	await knex.raw(`ALTER TABLE ??.products ADD CONSTRAINT products_price_positive CHECK (price_amount >= 1) NOT VALID`, [schema]);

	await knex.schema.withSchema(schema).createTable("variants", t => {
		t.uuid("id").primary();
		t.uuid("product_id").notNullable().references("id").inTable(`${schema}.products`);
		t.string("sku", 100).notNullable().unique();
		t.string("name", 200).notNullable();
		t.jsonb("attributes").notNullable().defaultTo("{}");
		t.integer("position").notNullable();
		t.index(["product_id", "position"]);
	});

	await knex.schema.withSchema(schema).createTable("product_changes", t => {
		t.bigIncrements("id").primary();
		t.uuid("product_id").notNullable();
		t.string("change", 20).notNullable(); // created | updated | activated | deactivated | deleted
		t.jsonb("changed_fields").notNullable().defaultTo("{}");
		t.string("actor", 100);
		t.timestamp("at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.index(["product_id", "id"]);
	});

	await knex.schema.withSchema(schema).createTable("stock", t => {
		t.string("sku", 100).primary();
		t.integer("available").notNullable();
		t.bigInteger("version").notNullable();
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("stock").dropTable("product_changes").dropTable("variants").dropTable("vendors");
}
