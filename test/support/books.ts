/**
 * The books of the shop, read straight from Postgres, and what is wrong with them: per SKU on hand =
 * initial − deducted and reserved = open reservations; every authorized payment belongs to a
 * confirmed order (else it is voided); no confirmed order without its payment and its stock; no
 * order left before the pivot, no cart locked. An empty list means they balance.
 */
import type { Knex } from "knex";

const s = (service: string) => `${process.env.SCHEMA_PREFIX}${service}`;

export interface BooksSummary {
	problems: string[];
	orders: Record<string, number>;
	payments: Record<string, number>;
}

/** `initial`: the stock each SKU of the test started with; `customerIds`: whose orders, payments and carts to look at. */
export async function checkBooks(db: Knex, initial: Record<string, number>, customerIds: string[]): Promise<BooksSummary> {
	const problems: string[] = [];
	const skus = Object.keys(initial);
	const stock = await db.withSchema(s("inventory")).table("stock").whereIn("sku", skus);
	const reservations = await db.withSchema(s("inventory")).table("reservations").whereIn("sku", skus);
	for (const sku of skus) {
		const row = stock.find((r: any) => r.sku === sku);
		const deducted = reservations.filter((r: any) => r.sku === sku && r.status === "deducted").reduce((n: number, r: any) => n + r.quantity, 0);
		const held = reservations.filter((r: any) => r.sku === sku && r.status === "held").reduce((n: number, r: any) => n + r.quantity, 0);
		if (row.on_hand !== initial[sku]! - deducted) problems.push(`${sku}: on hand ${row.on_hand}, expected ${initial[sku]! - deducted}`);
		if (row.reserved !== held) problems.push(`${sku}: reserved ${row.reserved}, open reservations ${held}`);
	}
	const orderIds = [...new Set(reservations.map((r: any) => r.order_id))];
	const orders = await db.withSchema(s("orders")).table("orders").whereIn("customer_id", customerIds).select("id", "status", "cart_id");
	const payments = await db.withSchema(s("payments")).table("payments").whereIn("order_id", orders.map((o: any) => o.id)).select("order_id", "status");
	const carts = await db.withSchema(s("carts")).table("carts").whereIn("customer_id", customerIds).whereNotNull("locked_by").select("id");
	const statusOf = new Map(orders.map((o: any) => [o.id, o.status as string]));
	for (const o of orders) {
		if (o.status === "pending" || o.status === "awaiting_payment") problems.push(`order ${o.id} still ${o.status}`);
		if (o.status === "confirmed") {
			if (!payments.some((p: any) => p.order_id === o.id && p.status === "authorized")) problems.push(`confirmed order ${o.id} has no authorized payment`);
			if (!reservations.some((r: any) => r.order_id === o.id && r.status === "held")) problems.push(`confirmed order ${o.id} holds no stock`);
		}
	}
	for (const p of payments) {
		if (p.status === "authorized" && statusOf.get(p.order_id) !== "confirmed") problems.push(`authorized payment of order ${p.order_id} (${statusOf.get(p.order_id) ?? "no order"})`);
		if (p.status === "pending") problems.push(`payment of order ${p.order_id} still pending`);
	}
	for (const id of orderIds) {
		const held = reservations.some((r: any) => r.order_id === id && r.status === "held");
		if (held && statusOf.get(id as string) !== "confirmed") problems.push(`stock held for order ${id} (${statusOf.get(id as string) ?? "no order"})`);
	}
	for (const c of carts) problems.push(`cart ${c.id} still locked`);
	const count = (rows: any[]) => rows.reduce<Record<string, number>>((n, r) => ({ ...n, [r.status]: (n[r.status] ?? 0) + 1 }), {});
	return { problems, orders: count(orders), payments: count(payments) };
}
