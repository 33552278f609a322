import { Knex } from "knex";

/**
 * Guest carts (found by the hash of their token, never the token itself), carts that ended
 * (merged into a customer's cart, expired), the price each line was last shown at, its product's
 * category, and the notices a cart shows its customer (a price changed, a product was removed).
 */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("carts", t => {
		t.string("guest_token_hash", 64).unique();
		t.timestamp("ended_at", { useTz: true }); // status merged | expired | checked_out
		t.index(["status", "updated_at"]);
	});
	await knex.schema.withSchema(schema).alterTable("cart_items", t => {
		t.uuid("category_id");
		t.bigInteger("unit_amount");
		t.string("currency", 3);
		t.index(["product_id"]);
	});
	await knex.schema.withSchema(schema).createTable("cart_notices", t => {
		t.bigIncrements("id").primary();
		t.uuid("cart_id").notNullable().references("id").inTable(`${schema}.carts`).onDelete("CASCADE");
		t.string("kind", 30).notNullable(); // price_changed | item_removed
		t.uuid("product_id");
		t.text("message").notNullable();
		t.jsonb("data").notNullable().defaultTo("{}");
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.index(["cart_id", "id"]);
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("cart_notices");
	await knex.schema.withSchema(schema).alterTable("cart_items", t => {
		t.dropColumn("category_id");
		t.dropColumn("unit_amount");
		t.dropColumn("currency");
	});
	await knex.schema.withSchema(schema).alterTable("carts", t => {
		t.dropColumn("guest_token_hash");
		t.dropColumn("ended_at");
	});
}
