import { Knex } from "knex";

/**
 * A customer's shipping addresses (at most 20 each, enforced by `customers.addAddress` under
 * the customer's row lock). Erasure deletes them; the foreign key deletes them with the
 * customer too. The postal code is stored in its country's canonical form.
 */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("addresses", t => {
		t.uuid("id").primary();
		t.uuid("customer_id").notNullable().references("id").inTable(`${schema}.customers`).onDelete("CASCADE");
		t.string("recipient_name", 200).notNullable();
		t.string("street", 200).notNullable();
		t.string("city", 100).notNullable();
		t.string("state", 100);
		t.string("postal_code", 20).notNullable();
		t.string("country", 2).notNullable();
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.index(["customer_id", "created_at"]);
	});
	await knex.raw(`ALTER TABLE ??.addresses ADD CONSTRAINT addresses_country_alpha2 CHECK (country ~ '^[A-Z]{2}$')`, [schema]);
	await knex.raw(
		`ALTER TABLE ??.addresses ADD CONSTRAINT addresses_fields_present CHECK (
			char_length(btrim(recipient_name)) >= 1 AND char_length(btrim(street)) >= 1
			AND char_length(btrim(city)) >= 1 AND char_length(btrim(postal_code)) >= 1)`,
		[schema]
	);
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("addresses");
}
