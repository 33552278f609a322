import { Knex } from "knex";

const STATUSES = "'pending','awaiting_payment','confirmed','shipped','delivered','cancelled','payment_failed'";

export async function up(knex: Knex, schema: string): Promise<void> {
	// Order numbers: SC-<year>-<seq>; a sequence never hands out one value twice, even across replicas.
	await knex.raw(`CREATE SEQUENCE ??.order_number_seq START 1`, [schema]);

	await knex.schema.withSchema(schema).createTable("orders", t => {
		t.uuid("id").primary(); // chosen by the caller (the checkout saga)
		t.string("order_number", 40).notNullable().unique();
		t.uuid("customer_id").notNullable();
		t.string("customer_email", 320); // null once the customer is erased
		t.uuid("cart_id");
		t.uuid("saga_id");
		t.string("status", 20).notNullable();
		t.string("currency", 3).notNullable();
		t.bigInteger("total_amount").notNullable();
		t.uuid("payment_id");
		t.string("tracking_number", 100);
		t.string("carrier", 50);
		t.timestamp("shipped_at", { useTz: true });
		t.timestamp("delivered_at", { useTz: true });
		t.timestamp("anonymized_at", { useTz: true });
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	await knex.raw(`ALTER TABLE ??.orders ADD CONSTRAINT orders_status_known CHECK (status IN (${STATUSES}))`, [schema]);
	await knex.raw(`ALTER TABLE ??.orders ADD CONSTRAINT orders_total_not_negative CHECK (total_amount >= 0)`, [schema]);
	await knex.raw(
		`ALTER TABLE ??.orders ADD CONSTRAINT orders_shipped_has_tracking CHECK (status NOT IN ('shipped','delivered') OR (tracking_number IS NOT NULL AND carrier IS NOT NULL))`,
		[schema]
	);
	await knex.raw(`CREATE INDEX orders_by_customer ON ??.orders (customer_id, created_at DESC)`, [schema]);
	await knex.raw(`CREATE INDEX orders_by_created ON ??.orders (created_at DESC)`, [schema]);

	await knex.schema.withSchema(schema).createTable("order_lines", t => {
		t.uuid("order_id").notNullable().references("id").inTable(`${schema}.orders`).onDelete("CASCADE");
		t.integer("position").notNullable();
		t.uuid("product_id").notNullable();
		t.string("sku", 100).notNullable();
		t.string("name", 300).notNullable();
		t.integer("quantity").notNullable();
		t.bigInteger("unit_amount").notNullable();
		t.bigInteger("line_amount").notNullable();
		t.string("currency", 3).notNullable();
		t.primary(["order_id", "position"]);
	});
	await knex.raw(`ALTER TABLE ??.order_lines ADD CONSTRAINT order_lines_quantity_positive CHECK (quantity >= 1)`, [schema]);
	await knex.raw(`ALTER TABLE ??.order_lines ADD CONSTRAINT order_lines_price_not_negative CHECK (unit_amount >= 0)`, [schema]);
	await knex.raw(`ALTER TABLE ??.order_lines ADD CONSTRAINT order_lines_total_is_price_times_quantity CHECK (line_amount = unit_amount * quantity)`, [schema]);

	await knex.schema.withSchema(schema).createTable("order_status_history", t => {
		t.bigIncrements("id").primary();
		t.uuid("order_id").notNullable().references("id").inTable(`${schema}.orders`).onDelete("CASCADE");
		t.string("from_status", 20);
		t.string("status", 20).notNullable();
		t.text("reason");
		t.string("code", 50);
		t.uuid("changed_by");
		t.timestamp("at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.index(["order_id", "id"]);
	});

	// An order the saga gave up on before it was ever created: a late `orders.create` for it
	// (a redelivered request) is refused instead of leaving a pending order nobody will finish.
	await knex.schema.withSchema(schema).createTable("abandoned_orders", t => {
		t.uuid("order_id").primary();
		t.text("reason");
		t.string("code", 50);
		t.timestamp("at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("abandoned_orders").dropTable("order_status_history").dropTable("order_lines").dropTable("orders");
	await knex.raw(`DROP SEQUENCE IF EXISTS ??.order_number_seq`, [schema]);
}
