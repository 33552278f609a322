/**
 * Add-on rules that need no broker. An add-on is offered for a cart when it is active and either
 * names no products and no categories (offered with every non-empty cart) or the cart holds one
 * of its products or a product of one of its categories. Its price is per order, not per unit.
 */
import { createHash } from "node:crypto";
import type { Addon, AddonLine, OfferedAddon } from "../../contracts/addons";

export function addonView(row: any): Addon {
	const list = (v: unknown): string[] => (typeof v === "string" ? JSON.parse(v) : ((v as string[] | null) ?? []));
	return {
		id: row.id,
		name: row.name,
		description: row.description,
		price: { amount: Number(row.price_amount), currency: row.currency },
		productIds: list(row.product_ids),
		categoryIds: list(row.category_ids),
		active: row.active
	};
}

export function offered(a: Addon): OfferedAddon {
	return { id: a.id, name: a.name, description: a.description, price: a.price };
}

export function isAvailable(a: Addon, lines: AddonLine[], currency?: string): boolean {
	if (!a.active || lines.length === 0) return false;
	if (currency && a.price.currency !== currency) return false;
	if (a.productIds.length === 0 && a.categoryIds.length === 0) return true;
	return lines.some(l => a.productIds.includes(l.productId) || (!!l.categoryId && a.categoryIds.includes(l.categoryId)));
}

/** A digest of what availability depends on: the products and categories in the cart, not their quantities or order. */
export function cartHash(lines: AddonLine[]): string {
	const keys = [...new Set(lines.map(l => `${l.productId}/${l.categoryId ?? ""}`))].sort();
	return createHash("sha256").update(keys.join(",")).digest("hex");
}

export function hashOf(value: unknown): string {
	return createHash("sha256").update(JSON.stringify(value)).digest("hex");
}
