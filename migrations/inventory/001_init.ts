import { Knex } from "knex";

export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).createTable("stock", t => {
		t.string("sku", 100).primary();
		t.uuid("product_id").notNullable();
		t.integer("on_hand").notNullable().defaultTo(0);
		t.integer("reserved").notNullable().defaultTo(0);
		t.integer("low_stock_threshold").notNullable().defaultTo(5);
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
	});
	// The invariants hold even if code is wrong: never negative, never more reserved than on hand.
	await knex.raw(`ALTER TABLE ??.stock ADD CONSTRAINT stock_never_negative CHECK (on_hand >= 0 AND reserved >= 0 AND reserved <= on_hand)`, [schema]);
	await knex.schema.withSchema(schema).createTable("reservations", t => {
		t.uuid("order_id").notNullable();
		t.string("sku", 100).notNullable().references("sku").inTable(`${schema}.stock`);
		t.integer("quantity").notNullable();
		t.string("status", 20).notNullable(); // held | released | deducted
		t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.primary(["order_id", "sku"]);
	});
	await knex.raw(`ALTER TABLE ??.reservations ADD CONSTRAINT reservations_quantity_positive CHECK (quantity > 0)`, [schema]);
	await knex.schema.withSchema(schema).createTable("audit", t => {
		t.bigIncrements("id").primary();
		t.string("sku", 100).notNullable();
		t.string("change", 30).notNullable(); // created | set | adjusted | reserved | released | deducted
		t.integer("on_hand_delta").notNullable();
		t.integer("reserved_delta").notNullable();
		t.integer("on_hand_after").notNullable();
		t.integer("reserved_after").notNullable();
		t.string("reason", 200);
		t.uuid("order_id");
		t.string("actor", 100);
		t.timestamp("at", { useTz: true }).notNullable().defaultTo(knex.fn.now());
		t.index(["sku", "id"]);
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).dropTable("audit").dropTable("reservations").dropTable("stock");
}
