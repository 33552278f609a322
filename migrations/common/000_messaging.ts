import { Knex } from "knex";

/** The messaging tables every service schema has: outbox, inbox and idempotency keys. */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("outbox", t => {
		t.bigIncrements("id").primary();
		t.uuid("event_id").notNullable().unique();
		t.string("event_name", 100).notNullable();
		t.string("aggregate_id", 100).notNullable();
		t.jsonb("envelope").notNullable();
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("claimed_until", { useTz: true });
		t.timestamp("sent_at", { useTz: true });
		t.integer("attempts").notNullable().defaultTo(0);
	});
	await knex.raw(`CREATE INDEX outbox_unsent ON ??.outbox (id) WHERE sent_at IS NULL`, [schema]);
	await knex.schema.withSchema(schema).createTable("inbox", t => {
		t.string("handler", 150).notNullable();
		t.uuid("event_id").notNullable();
		t.string("event_name", 100).notNullable();
		t.timestamp("handled_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.primary(["handler", "event_id"]);
	});
	await knex.schema.withSchema(schema).createTable("idempotency_keys", t => {
		t.string("key", 200).primary();
		t.string("action", 100).notNullable();
		t.jsonb("result");
		t.jsonb("error");
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("idempotency_keys").dropTable("inbox").dropTable("outbox");
}
