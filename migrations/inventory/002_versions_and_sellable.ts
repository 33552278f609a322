import { Knex } from "knex";

/**
 * Every change of a stock row bumps its version (readers of inventory.updated keep the newest);
 * a row of a deleted or deactivated product keeps its history but takes no new reservations;
 * a variant's row knows its variant.
 */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("stock", t => {
		t.bigInteger("version").notNullable().defaultTo(0);
		t.boolean("sellable").notNullable().defaultTo(true);
		t.uuid("variant_id");
		t.index(["product_id"]);
	});
	// Products deleted: their stock never becomes sellable again.
	await knex.schema.withSchema(schema).createTable("deleted_products", t => {
		t.uuid("product_id").primary();
		t.timestamp("at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("deleted_products");
	await knex.schema.withSchema(schema).alterTable("stock", t => {
		t.dropIndex(["product_id"]);
		t.dropColumn("version");
		t.dropColumn("sellable");
		t.dropColumn("variant_id");
	});
}
