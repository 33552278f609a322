import { Knex } from "knex";

/**
 * The HTML body and the number of attempts of each delivery; one delivery per event, channel,
 * recipient and template; and what notifications needs to know to address a message whose event
 * carries no address: the customers' emails (from customer.registered) and each order's
 * customer (from order.placed).
 */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("notifications", t => {
		t.text("html");
		t.integer("attempts").notNullable().defaultTo(1);
	});
	await knex.raw(`CREATE UNIQUE INDEX notifications_once_per_event ON ??.notifications (event_id, channel, lower("to"), template) WHERE event_id IS NOT NULL AND "to" <> 'erased'`, [schema]);
	await knex.schema.withSchema(schema).createTable("recipients", t => {
		t.uuid("customer_id").primary();
		t.string("email", 320).notNullable();
		t.string("first_name", 100);
	});
	await knex.schema.withSchema(schema).createTable("orders", t => {
		t.uuid("order_id").primary();
		t.string("order_number", 40).notNullable();
		t.uuid("customer_id");
		t.string("email", 320);
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.raw(`DROP INDEX IF EXISTS ??.notifications_once_per_event`, [schema]);
	await knex.schema.withSchema(schema).dropTable("orders").dropTable("recipients");
	await knex.schema.withSchema(schema).alterTable("notifications", t => {
		t.dropColumn("html");
		t.dropColumn("attempts");
	});
}
