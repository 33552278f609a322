import { Knex } from "knex";

/**
 * The checkout's snapshot kept with the order (address, shipping method, delivery date,
 * add-ons, promotions, every total, payment method) and how a cancellation ended.
 */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("orders", t => {
		t.jsonb("snapshot");
		t.string("payment_method", 20);
		t.text("cancel_reason");
		t.bigInteger("refund_amount");
		t.timestamp("cancelled_at", { useTz: true });
	});
	await knex.raw(`CREATE INDEX orders_by_status_created ON ??.orders (status, created_at DESC)`, [schema]);
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.raw(`DROP INDEX IF EXISTS ??.orders_by_status_created`, [schema]);
	await knex.schema.withSchema(schema).alterTable("orders", t => {
		t.dropColumn("snapshot");
		t.dropColumn("payment_method");
		t.dropColumn("cancel_reason");
		t.dropColumn("refund_amount");
		t.dropColumn("cancelled_at");
	});
}
