import { Knex } from "knex";

export async function up(knex: Knex, schema: string): Promise<void> {
	// A repeated POST /api/checkout/place with the same Idempotency-Key finds its saga here.
	await knex.schema.withSchema(schema).createTable("place_requests", t => {
		t.string("idempotency_key", 200).notNullable();
		t.uuid("customer_id").notNullable();
		t.uuid("saga_id").notNullable();
		t.uuid("order_id").notNullable();
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.primary(["customer_id", "idempotency_key"]);
	});
	// The outcome of each saga is announced once (checkout.completed / checkout.failed).
	await knex.schema.withSchema(schema).createTable("saga_outcomes", t => {
		t.uuid("saga_id").primary();
		t.string("type", 50).notNullable();
		t.string("status", 20).notNullable();
		t.timestamp("finished_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("saga_outcomes").dropTable("place_requests");
}
