import { Knex } from "knex";

/**
 * Soft reservations: stock a cart holds for a while (counted in `reserved` like an order's),
 * until its lines change, the cart checks out or empties, or the hold expires.
 */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("holds", t => {
		t.uuid("cart_id").notNullable();
		t.string("sku", 100).notNullable().references("sku").inTable(`${schema}.stock`);
		t.integer("quantity").notNullable();
		t.timestamp("expires_at", { useTz: true }).notNullable();
		t.primary(["cart_id", "sku"]);
		t.index(["expires_at"]);
	});
	await knex.raw(`ALTER TABLE ??.holds ADD CONSTRAINT holds_quantity_positive CHECK (quantity > 0)`, [schema]);
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("holds");
}
