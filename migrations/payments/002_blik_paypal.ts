import { Knex } from "knex";

/**
 * BLIK and PayPal: a payment may wait for the buyer (`pending`), it remembers who pays and
 * where PayPal sends the buyer back, and every provider webhook is kept by its event id so a
 * repeat changes nothing.
 */
const ACTIVE_STATUSES = "'pending','authorized','captured','partially_refunded','refunded'";

export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.raw(`ALTER TABLE ??.payments DROP CONSTRAINT payments_status_known`, [schema]);
	await knex.raw(
		`ALTER TABLE ??.payments ADD CONSTRAINT payments_status_known CHECK (status IN ('pending','authorized','failed','voided','captured','partially_refunded','refunded'))`,
		[schema]
	);
	await knex.raw(`ALTER TABLE ??.payments ADD CONSTRAINT payments_method_known CHECK (method IN ('card','blik','paypal'))`, [schema]);
	await knex.schema.withSchema(schema).alterTable("payments", t => {
		t.uuid("customer_id");
		t.text("return_url");
		t.text("cancel_url");
		t.text("redirect_url");
	});
	// A pending payment holds the order's one place too: a second authorization answers it.
	await knex.raw(`DROP INDEX ??.payments_one_active_per_order`, [schema]);
	await knex.raw(`CREATE UNIQUE INDEX payments_one_active_per_order ON ??.payments (order_id) WHERE status IN (${ACTIVE_STATUSES})`, [schema]);
	await knex.raw(`CREATE INDEX payments_by_provider_ref ON ??.payments (provider_ref)`, [schema]);

	await knex.schema.withSchema(schema).createTable("webhook_events", t => {
		t.string("event_id", 200).primary();
		t.string("provider", 50).notNullable();
		t.string("transaction_id", 100).notNullable();
		t.string("status", 20).notNullable();
		t.uuid("payment_id");
		/** What the event did: approved, rejected, late_approval_voided, ignored … */
		t.string("outcome", 40).notNullable();
		t.timestamp("received_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});

	// The method a checkout (by its cart) chose: payment.method_selected is told only when it changes.
	await knex.schema.withSchema(schema).createTable("method_choices", t => {
		t.uuid("cart_id").primary();
		t.uuid("customer_id");
		t.string("method", 20).notNullable();
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("method_choices").dropTable("webhook_events");
}
