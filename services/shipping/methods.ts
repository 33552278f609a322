/**
 * Shipping rules that need no broker: a method's view, and the quote — price and delivery date
 * for a cart. A quote is refused (never guessed) when the method does not serve the country,
 * the currencies differ, or the date is in the past or outside the method's window.
 *
 * - Price: the method's price, 0 when `freeOver` is set and the cart total reaches it.
 * - Express: adds the method's `expressFee` (free shipping does not waive it); a method without
 *   an express fee offers no express delivery. The window is the same, express or not.
 * - Window: from today + deliveryDays.min to today + deliveryDays.max, calendar days in UTC.
 */
import type { Money } from "../../contracts/money";
import type { QuoteReply, ShippingMethod } from "../../contracts/shipping";

export interface MethodRow {
	id: string;
	name: string;
	carrier: string;
	price_amount: string | number;
	currency: string;
	free_over_amount: string | number | null;
	countries: string[] | string;
	delivery_min: number;
	delivery_max: number;
	express_fee_amount: string | number | null;
	active: boolean;
}

export function methodView(row: MethodRow): ShippingMethod {
	const m = (amount: string | number | null) => (amount === null || amount === undefined ? null : { amount: Number(amount), currency: row.currency });
	return {
		id: row.id,
		name: row.name,
		carrier: row.carrier,
		price: m(row.price_amount)!,
		freeOver: m(row.free_over_amount),
		countries: typeof row.countries === "string" ? JSON.parse(row.countries) : row.countries,
		deliveryDays: { min: row.delivery_min, max: row.delivery_max },
		expressFee: m(row.express_fee_amount),
		active: row.active
	};
}

/** A refusal names the field at fault, as a validation error does. */
export interface Refusal {
	field: string;
	message: string;
}

export function todayUtc(now: Date = new Date()): string {
	return now.toISOString().slice(0, 10);
}

export function addDays(date: string, days: number): string {
	const d = new Date(`${date}T00:00:00Z`);
	d.setUTCDate(d.getUTCDate() + days);
	return d.toISOString().slice(0, 10);
}

export function deliveryWindow(method: ShippingMethod, today: string) {
	return { from: addDays(today, method.deliveryDays.min), to: addDays(today, method.deliveryDays.max) };
}

export function quote(
	method: ShippingMethod,
	req: { country: string; cartTotal: Money; deliveryDate?: string; express?: boolean },
	today: string
): { ok: true; quote: QuoteReply } | { ok: false; refusal: Refusal } {
	const refuse = (field: string, message: string) => ({ ok: false as const, refusal: { field, message } });
	if (!method.active) return refuse("methodId", `Shipping method '${method.name}' is no longer offered`);
	if (!method.countries.includes(req.country)) {
		return refuse("country", `'${method.name}' does not deliver to ${req.country}; it delivers to ${method.countries.join(", ")}`);
	}
	if (req.cartTotal.currency !== method.price.currency) {
		return refuse("cartTotal.currency", `'${method.name}' is priced in ${method.price.currency}, the cart in ${req.cartTotal.currency}`);
	}
	const express = req.express === true;
	if (express && !method.expressFee) return refuse("express", `'${method.name}' has no express delivery`);
	const window = deliveryWindow(method, today);
	const deliveryDate = req.deliveryDate ?? window.from;
	if (deliveryDate < today) return refuse("deliveryDate", `${deliveryDate} is in the past`);
	if (deliveryDate < window.from || deliveryDate > window.to) {
		return refuse("deliveryDate", `'${method.name}' delivers between ${window.from} and ${window.to}, not on ${deliveryDate}`);
	}
	const free = method.freeOver !== null && req.cartTotal.amount >= method.freeOver.amount;
	const basePrice = { amount: free ? 0 : method.price.amount, currency: method.price.currency };
	const expressFee = { amount: express ? method.expressFee!.amount : 0, currency: method.price.currency };
	return {
		ok: true,
		quote: { method, price: { amount: basePrice.amount + expressFee.amount, currency: basePrice.currency }, basePrice, expressFee, free, deliveryDate, express, window }
	};
}
