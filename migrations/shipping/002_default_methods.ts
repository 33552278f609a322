import { randomUUID } from "node:crypto";
import { Knex } from "knex";

/**
 * A fresh shop ships by courier and to parcel lockers. A migration runs once per schema
 * (under the migration lock), however many replicas start at the same time.
 */
export async function up(knex: Knex, schema: string): Promise<void> {
	await knex.withSchema(schema).table("methods").insert([
		{
			id: randomUUID(), name: "Courier", carrier: "DPD", price_amount: 1999, currency: "PLN", free_over_amount: 30000,
			countries: JSON.stringify(["PL", "DE", "CZ", "SK", "LT"]), delivery_min: 1, delivery_max: 5, express_fee_amount: 1500
		},
		{
			id: randomUUID(), name: "Parcel locker", carrier: "InPost", price_amount: 1299, currency: "PLN", free_over_amount: 20000,
			countries: JSON.stringify(["PL"]), delivery_min: 1, delivery_max: 4, express_fee_amount: null
		}
	]);
}

export async function down(knex: Knex, schema: string): Promise<void> {
	await knex.withSchema(schema).table("methods").whereIn("name", ["Courier", "Parcel locker"]).delete();
}
