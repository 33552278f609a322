import { Knex } from "knex";

export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("promotions", t => {
		t.uuid("id").primary();
		t.string("name", 100).notNullable();
		t.string("code", 40); // upper case; null = automatic
		t.string("kind", 20).notNullable(); // percentage | fixed
		t.bigInteger("value").notNullable();
		t.string("currency", 3).notNullable();
		t.bigInteger("min_cart_total");
		t.jsonb("product_ids").notNullable().defaultTo("[]");
		t.jsonb("category_ids").notNullable().defaultTo("[]");
		t.timestamp("valid_from", { useTz: true });
		t.timestamp("valid_to", { useTz: true });
		t.integer("usage_limit");
		t.integer("per_customer_limit");
		t.integer("uses").notNullable().defaultTo(0);
		t.boolean("active").notNullable().defaultTo(true);
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	await knex.raw(`CREATE UNIQUE INDEX promotions_code_unique ON ??.promotions (code) WHERE code IS NOT NULL`, [schema]);
	// Uses never go below zero. (Above the limit is possible only when an admin lowers the limit.)
	await knex.raw(
		`ALTER TABLE ??.promotions ADD CONSTRAINT promotions_sane CHECK (uses >= 0 AND value > 0 AND (kind = 'fixed' OR value <= 100)
		 AND kind IN ('percentage', 'fixed') AND (code IS NULL OR code = upper(code)))`,
		[schema]
	);
	// One row per order: its redemption of a code, or a tombstone once released (no redeem after).
	await knex.schema.withSchema(schema).createTable("redemptions", t => {
		t.uuid("id").primary();
		t.uuid("order_id").notNullable().unique();
		t.uuid("promotion_id").references("id").inTable(`${schema}.promotions`);
		t.uuid("customer_id");
		t.string("code", 40);
		t.string("status", 20).notNullable(); // redeemed | released
		t.string("reason", 200);
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("released_at", { useTz: true });
		t.index(["promotion_id", "customer_id", "status"]);
	});
	// What the checkout session was last told applies: differences become promotion.applied / .removed.
	await knex.schema.withSchema(schema).createTable("checkout_promotions", t => {
		t.uuid("checkout_id").notNullable();
		t.uuid("promotion_id").notNullable();
		t.string("code", 40);
		t.bigInteger("discount_amount").notNullable();
		t.string("currency", 3).notNullable();
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.primary(["checkout_id", "promotion_id"]);
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("checkout_promotions").dropTable("redemptions").dropTable("promotions");
}
