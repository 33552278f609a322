import { Knex } from "knex";

/** The delivery log: every email and SMS the shop sent or failed to send. */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("notifications", t => {
		t.uuid("id").primary();
		t.string("channel", 10).notNullable();
		t.string("to", 320).notNullable();
		t.string("template", 100).notNullable();
		t.text("subject").notNullable();
		t.text("text").notNullable();
		t.string("status", 10).notNullable();
		t.text("error");
		t.jsonb("data").notNullable().defaultTo("{}");
		t.uuid("event_id"); // the event that caused it
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	await knex.raw(`ALTER TABLE ??.notifications ADD CONSTRAINT notifications_channel_known CHECK (channel IN ('email', 'sms'))`, [schema]);
	await knex.raw(`ALTER TABLE ??.notifications ADD CONSTRAINT notifications_status_known CHECK (status IN ('sent', 'failed'))`, [schema]);
	await knex.raw(`ALTER TABLE ??.notifications ADD CONSTRAINT notifications_failed_has_error CHECK ((status = 'failed') = (error IS NOT NULL))`, [schema]);
	await knex.raw(`CREATE INDEX notifications_by_created ON ??.notifications (created_at DESC, id DESC)`, [schema]);
	await knex.raw(`CREATE INDEX notifications_by_to ON ??.notifications (lower("to"), created_at DESC)`, [schema]);
	await knex.raw(`CREATE INDEX notifications_by_template ON ??.notifications (template, created_at DESC)`, [schema]);
	await knex.raw(`CREATE INDEX notifications_by_event ON ??.notifications (event_id)`, [schema]);
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("notifications");
}
