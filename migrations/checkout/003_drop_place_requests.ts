import { Knex } from "knex";

// A repeated place is now answered from ids derived from (customer, Idempotency-Key) and the saga
// store, with the reconciler as the fallback: this lookup table is no longer read or written.
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTableIfExists("place_requests");
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("place_requests", t => {
		t.string("idempotency_key", 200).notNullable();
		t.uuid("customer_id").notNullable();
		t.uuid("saga_id").notNullable();
		t.uuid("order_id").notNullable();
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.primary(["customer_id", "idempotency_key"]);
	});
}
