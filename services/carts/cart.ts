/** Cart rules that need no broker: pricing a cart and capping quantities to stock. */
import { Money, multiply, sum } from "../../contracts/money";

export interface CartItemRow {
	id: string;
	product_id: string;
	sku: string;
	variant_id: string | null;
	quantity: number;
}

export interface ProductInfo {
	id: string;
	name: string;
	price: Money;
	status: string;
	categoryId?: string | null;
}

export interface PricedLine {
	id: string;
	productId: string;
	sku: string;
	variantId: string | null;
	name: string;
	/** For promotions and add-ons scoped to a category. */
	categoryId: string | null;
	quantity: number;
	unitPrice: Money;
	lineTotal: Money;
	active: boolean;
}

export const MAX_LINE_QUANTITY = 999;

/** Lines with the products' current prices; a product the catalog no longer knows is left out. */
export function priceLines(items: CartItemRow[], products: ProductInfo[]): PricedLine[] {
	const byId = new Map(products.map(p => [p.id, p]));
	const lines: PricedLine[] = [];
	for (const item of items) {
		const p = byId.get(item.product_id);
		if (!p) continue;
		lines.push({
			id: item.id,
			productId: item.product_id,
			sku: item.sku,
			variantId: item.variant_id,
			name: p.name,
			categoryId: p.categoryId ?? null,
			quantity: item.quantity,
			unitPrice: p.price,
			lineTotal: multiply(p.price, item.quantity),
			active: p.status === "active"
		});
	}
	return lines;
}

export function cartTotal(lines: PricedLine[], fallbackCurrency = "PLN"): Money {
	const currency = lines[0]?.unitPrice.currency ?? fallbackCurrency;
	return sum(
		lines.map(l => l.lineTotal),
		currency
	);
}

/**
 * How many units an add may put in the cart: what the customer asks for on top of what is
 * already there, capped to the available stock.
 */
export function cappedQuantity(alreadyInCart: number, requested: number, available: number): number {
	return Math.min(alreadyInCart + requested, available, MAX_LINE_QUANTITY);
}
