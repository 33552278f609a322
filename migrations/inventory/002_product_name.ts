import { Knex } from "knex";

/** The product's name, kept with its stock so stock alerts for outside systems can say what runs low. */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("stock", t => {
		t.string("product_name", 300);
	});
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.schema.withSchema(schema).alterTable("stock", t => {
		t.dropColumn("product_name");
	});
}
