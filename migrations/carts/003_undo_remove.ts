import { Knex } from "knex";

// The line a customer removed last, so the removal can be undone: {itemId, productId, variantId, sku, name, quantity, removedAt}.
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("carts", t => {
		t.jsonb("last_removed");
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("carts", t => {
		t.dropColumn("last_removed");
	});
}
