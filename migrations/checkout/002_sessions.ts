import { Knex } from "knex";

export async function up(knex: Knex, schema: string): Promise<void> {
	// One checkout per cart: what the customer chose so far and the totals last computed from it.
	await knex.schema.withSchema(schema).createTable("checkouts", t => {
		t.uuid("id").primary();
		t.uuid("cart_id").notNullable().unique();
		t.uuid("customer_id");
		t.uuid("address_id"); // from the address book, when chosen from it
		t.jsonb("address"); // the address itself, as it will be printed on the label
		t.string("shipping_method_id", 100);
		t.jsonb("shipping_method"); // the method as quoted: {id, name, carrier, price}
		t.string("delivery_date", 10); // YYYY-MM-DD
		t.boolean("express").notNullable().defaultTo(false);
		t.string("payment_method", 20); // card | blik | paypal
		t.string("promo_code", 100);
		t.string("promo_code_status", 20); // applied | unknown | expired | not_applicable | used_up
		t.jsonb("addon_ids").notNullable().defaultTo("[]");
		t.jsonb("addons").notNullable().defaultTo("[]"); // chosen add-ons as priced: [{id, name, price}]
		t.jsonb("promotions").notNullable().defaultTo("[]"); // promotions applied: [{promotionId, name, code?, discount}]
		t.jsonb("lines").notNullable().defaultTo("[]"); // the cart's lines the totals were computed from
		t.jsonb("totals").notNullable(); // {cartTotal, promotionDiscount, shippingTotal, servicesTotal, grandTotal, currency}
		t.integer("version").notNullable().defaultTo(1); // optimistic lock: a recompute writes only over what it read
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	await knex.raw(`CREATE INDEX checkouts_customer ON ??.checkouts (customer_id)`, [schema]);
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("checkouts");
}
