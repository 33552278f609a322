import { Knex } from "knex";

/**
 * Customers and their email-verification tokens. Addresses (a later migration) will reference
 * `customers.id`; `erased_at` is there for GDPR erasure, which also comes later.
 */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("customers", t => {
		t.uuid("id").primary();
		t.string("email", 320).notNullable();
		t.text("password_hash").notNullable();
		t.string("first_name", 100).notNullable();
		t.string("last_name", 100).notNullable();
		t.string("role", 20).notNullable().defaultTo("customer");
		t.boolean("email_verified").notNullable().defaultTo(false);
		t.timestamp("email_verified_at", { useTz: true });
		t.timestamp("erased_at", { useTz: true });
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	// One account per address, whatever its case — also when two registrations race.
	await knex.raw(`CREATE UNIQUE INDEX customers_email_unique ON ??.customers (lower(email))`, [schema]);
	await knex.raw(`ALTER TABLE ??.customers ADD CONSTRAINT customers_role_known CHECK (role IN ('customer', 'admin'))`, [schema]);
	await knex.raw(`ALTER TABLE ??.customers ADD CONSTRAINT customers_email_normalized CHECK (email = lower(btrim(email)) AND email <> '')`, [schema]);
	await knex.raw(
		`ALTER TABLE ??.customers ADD CONSTRAINT customers_names_present CHECK (char_length(btrim(first_name)) >= 1 AND char_length(btrim(last_name)) >= 1)`,
		[schema]
	);
	await knex.raw(
		`ALTER TABLE ??.customers ADD CONSTRAINT customers_verified_has_time CHECK (email_verified = (email_verified_at IS NOT NULL))`,
		[schema]
	);

	await knex.schema.withSchema(schema).createTable("email_verification_tokens", t => {
		t.uuid("id").primary();
		t.uuid("customer_id").notNullable().references("id").inTable(`${schema}.customers`).onDelete("CASCADE");
		t.string("token_hash", 64).notNullable().unique(); // sha256 hex; the token itself is never stored here
		t.timestamp("expires_at", { useTz: true }).notNullable();
		t.timestamp("used_at", { useTz: true });
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.index(["customer_id", "created_at"]);
	});
	await knex.raw(
		`ALTER TABLE ??.email_verification_tokens ADD CONSTRAINT email_verification_tokens_hash_is_sha256 CHECK (token_hash ~ '^[0-9a-f]{64}$')`,
		[schema]
	);
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("email_verification_tokens").dropTable("customers");
}
