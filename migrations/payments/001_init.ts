import { Knex } from "knex";

/** Statuses in which a payment holds or took the order's money: at most one per order. */
const ACTIVE_STATUSES = "'authorized','captured','partially_refunded','refunded'";

export async function up(knex: Knex, schema: string): Promise<void> {
	// The simulated provider's vault: the only place in the whole system a card number is kept.
	await knex.schema.withSchema(schema).createTable("card_tokens", t => {
		t.string("token", 64).primary();
		t.string("card_number", 19).notNullable();
		t.string("brand", 20).notNullable();
		t.string("last4", 4).notNullable();
		t.smallint("exp_month").notNullable();
		t.smallint("exp_year").notNullable();
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	await knex.raw(`ALTER TABLE ??.card_tokens ADD CONSTRAINT card_tokens_exp_month CHECK (exp_month BETWEEN 1 AND 12)`, [schema]);

	await knex.schema.withSchema(schema).createTable("payments", t => {
		t.uuid("id").primary();
		t.uuid("order_id").notNullable();
		t.string("method", 20).notNullable().defaultTo("card");
		t.string("status", 20).notNullable();
		t.bigInteger("amount").notNullable();
		t.string("currency", 3).notNullable();
		t.bigInteger("captured_amount").notNullable().defaultTo(0);
		t.bigInteger("refunded_amount").notNullable().defaultTo(0);
		t.string("payment_token", 64);
		t.string("brand", 20);
		t.string("last4", 4);
		t.string("provider_ref", 100);
		t.string("failure_type", 50);
		t.text("failure_reason");
		t.text("void_reason");
		t.string("idempotency_key", 200);
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("authorized_at", { useTz: true });
		t.timestamp("captured_at", { useTz: true });
		t.timestamp("voided_at", { useTz: true });
		t.index(["order_id", "created_at"]);
	});
	await knex.raw(
		`ALTER TABLE ??.payments ADD CONSTRAINT payments_status_known CHECK (status IN ('authorized','failed','voided','captured','partially_refunded','refunded'))`,
		[schema]
	);
	await knex.raw(`ALTER TABLE ??.payments ADD CONSTRAINT payments_amount_positive CHECK (amount > 0)`, [schema]);
	await knex.raw(`ALTER TABLE ??.payments ADD CONSTRAINT payments_capture_within_amount CHECK (captured_amount >= 0 AND captured_amount <= amount)`, [schema]);
	await knex.raw(`ALTER TABLE ??.payments ADD CONSTRAINT payments_refund_within_capture CHECK (refunded_amount >= 0 AND refunded_amount <= captured_amount)`, [schema]);
	await knex.raw(`ALTER TABLE ??.payments ADD CONSTRAINT payments_failure_has_reason CHECK (status <> 'failed' OR (failure_type IS NOT NULL AND failure_reason IS NOT NULL))`, [schema]);
	await knex.raw(`ALTER TABLE ??.payments ADD CONSTRAINT payments_holding_has_ref CHECK (status IN ('failed') OR provider_ref IS NOT NULL)`, [schema]);
	// One authorized (or captured) payment per order, even when two authorizations race.
	await knex.raw(`CREATE UNIQUE INDEX payments_one_active_per_order ON ??.payments (order_id) WHERE status IN (${ACTIVE_STATUSES})`, [schema]);

	await knex.schema.withSchema(schema).createTable("refunds", t => {
		t.uuid("id").primary();
		t.uuid("payment_id").notNullable().references("id").inTable(`${schema}.payments`);
		t.uuid("order_id").notNullable();
		t.bigInteger("amount").notNullable();
		t.string("currency", 3).notNullable();
		t.text("reason");
		t.string("provider_ref", 100).notNullable();
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.index(["payment_id"]);
	});
	await knex.raw(`ALTER TABLE ??.refunds ADD CONSTRAINT refunds_amount_positive CHECK (amount > 0)`, [schema]);

	// Orders whose payment was voided (a compensation or a cancellation): an authorization that
	// arrives later for such an order (a late, redelivered request) is released, not kept.
	await knex.schema.withSchema(schema).createTable("voided_orders", t => {
		t.uuid("order_id").primary();
		t.text("reason");
		t.timestamp("voided_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("voided_orders").dropTable("refunds").dropTable("payments").dropTable("card_tokens");
}
