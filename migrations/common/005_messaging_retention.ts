import { Knex } from "knex";

/** Indexes for the retention job: it deletes by age, and must not scan whole tables to do it. */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.raw(`CREATE INDEX IF NOT EXISTS inbox_handled_at ON ??.inbox (handled_at)`, [schema]);
	await knex.raw(`CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON ??.idempotency_keys (created_at)`, [schema]);
	await knex.raw(`CREATE INDEX IF NOT EXISTS outbox_sent_at ON ??.outbox (sent_at) WHERE sent_at IS NOT NULL`, [schema]);
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.raw(`DROP INDEX IF EXISTS ??.inbox_handled_at, ??.idempotency_keys_created_at, ??.outbox_sent_at`, [schema, schema, schema]);
}
