/** Cart rules that need no broker: pricing a cart and capping quantities to stock. */
import { Money, multiply, sum } from "../../contracts/money";

export interface CartItemRow {
	id: string;
	product_id: string;
	sku: string;
	variant_id: string | null;
	category_id?: string | null;
	quantity: number;
}

export interface ProductInfo {
	id: string;
	name: string;
	price: Money;
	status: string;
	categoryId?: string | null;
	variants?: Array<{ id: string; sku: string; name: string }>;
}

export interface PricedLine {
	id: string;
	productId: string;
	sku: string;
	variantId: string | null;
	/** For promotions and add-ons scoped to a category. */
	categoryId: string | null;
	name: string;
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
		const variant = item.variant_id ? p.variants?.find(v => v.id === item.variant_id) : undefined;
		lines.push({
			id: item.id,
			productId: item.product_id,
			sku: item.sku,
			variantId: item.variant_id,
			categoryId: p.categoryId ?? item.category_id ?? null,
			name: variant ? `${p.name} (${variant.name})` : p.name,
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

export interface MergedLine {
	productId: string;
	sku: string;
	variantId: string | null;
	categoryId: string | null;
	/** What the customer's cart held of this SKU before. */
	before: number;
	/** What the guest cart brought. */
	requested: number;
	/** What the customer's cart holds after: both together, capped to the available stock. */
	quantity: number;
	capped: boolean;
}

/**
 * A guest cart joining a customer's: each SKU's quantities add up, capped to what is
 * available (a SKU with none left keeps what the customer had, or drops out).
 */
export function mergeLines(customer: CartItemRow[], guest: CartItemRow[], available: Map<string, number>): MergedLine[] {
	const out: MergedLine[] = [];
	for (const g of guest) {
		const mine = customer.find(c => c.sku === g.sku);
		const before = mine?.quantity ?? 0;
		const wanted = before + g.quantity;
		const quantity = Math.max(before, Math.min(wanted, available.get(g.sku) ?? 0, MAX_LINE_QUANTITY));
		out.push({ productId: g.product_id, sku: g.sku, variantId: g.variant_id, categoryId: g.category_id ?? null, before, requested: g.quantity, quantity, capped: quantity < wanted });
	}
	return out;
}
