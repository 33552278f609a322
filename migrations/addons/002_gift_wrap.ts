import { randomUUID } from "node:crypto";
import { Knex } from "knex";

/** A fresh shop offers gift wrapping with every cart; admins add the rest. */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.withSchema(schema).table("addons").insert({
		id: randomUUID(), name: "Gift wrapping", description: "Wrapped in paper with a ribbon and a card", price_amount: 999, currency: "PLN"
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.withSchema(schema).table("addons").where({ name: "Gift wrapping" }).delete();
}
