import { Knex } from "knex";

/**
 * An outbox row is a domain event (target null: the service channels) or an integration
 * event for outside systems (target 'integration': the integration topic exchange).
 */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("outbox", t => {
		t.string("target", 20);
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("outbox", t => {
		t.dropColumn("target");
	});
}
