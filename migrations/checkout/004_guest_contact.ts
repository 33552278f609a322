import { Knex } from "knex";

// A guest has no account to mail: the checkout keeps the email (and phone) the guest gave.
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("checkouts", t => {
		t.jsonb("contact"); // {email, phone} — guests only; customers are mailed at their account's address
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("checkouts", t => {
		t.dropColumn("contact");
	});
}
