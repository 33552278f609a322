import { Knex } from "knex";

export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("carts", t => {
		t.uuid("id").primary();
		t.uuid("customer_id");
		t.string("status", 20).notNullable().defaultTo("active"); // active | checked_out
		t.uuid("locked_by"); // the checkout saga holding the cart
		t.timestamp("locked_at", { useTz: true });
		t.uuid("order_id");
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	// One active cart per customer, even when two requests create it at once.
	await knex.raw(`CREATE UNIQUE INDEX carts_one_active_per_customer ON ??.carts (customer_id) WHERE status = 'active'`, [schema]);
	await knex.schema.withSchema(schema).createTable("cart_items", t => {
		t.uuid("id").primary();
		t.uuid("cart_id").notNullable().references("id").inTable(`${schema}.carts`).onDelete("CASCADE");
		t.uuid("product_id").notNullable();
		t.string("sku", 100).notNullable();
		t.string("variant_id", 100);
		t.integer("quantity").notNullable();
		t.timestamp("added_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.unique(["cart_id", "sku"]);
	});
	await knex.raw(`ALTER TABLE ??.cart_items ADD CONSTRAINT cart_items_quantity_positive CHECK (quantity > 0)`, [schema]);
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("cart_items").dropTable("carts");
}
