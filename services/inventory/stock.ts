/**
 * Stock rules that need no broker: can an order be reserved, may on-hand change to a value,
 * and which alerts a change raises. The database enforces the same invariants with a CHECK
 * constraint (on_hand ≥ 0, reserved ≥ 0, reserved ≤ on_hand); these rules refuse a change
 * with a clear reason before it ever reaches the constraint.
 */

export interface StockRow {
	sku: string;
	product_id: string;
	on_hand: number;
	reserved: number;
	low_stock_threshold: number;
	version?: number | string;
	sellable?: boolean;
	variant_id?: string | null;
	/** The product's name when known (for stock alerts). */
	product_name?: string | null;
}

export interface Line {
	sku: string;
	quantity: number;
}

export type Plan = { ok: true } | { ok: false; sku: string; requested: number; available: number };

export type Alert = "low_stock" | "out_of_stock";

export function available(row: Pick<StockRow, "on_hand" | "reserved">): number {
	return row.on_hand - row.reserved;
}

/** All lines or none: the first line (in SKU order) that cannot be covered refuses the whole order. */
export function planReservation(rows: StockRow[], lines: Line[]): Plan {
	const bySku = new Map(rows.map(r => [r.sku, r]));
	for (const { sku, quantity: requested } of normalizeLines(lines)) {
		const row = bySku.get(sku);
		const free = row ? available(row) : 0;
		if (requested > free) return { ok: false, sku, requested, available: free };
	}
	return { ok: true };
}

/** Merges repeated SKUs and orders lines by SKU (rows are locked in that order: no deadlocks). */
export function normalizeLines(lines: Line[]): Line[] {
	const merged = new Map<string, number>();
	for (const l of lines) merged.set(l.sku, (merged.get(l.sku) ?? 0) + l.quantity);
	return [...merged.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([sku, quantity]) => ({ sku, quantity }));
}

/**
 * Why on-hand may not become `onHand`, or null when it may: never negative, and never below
 * what is reserved for orders (those units are promised).
 */
export function onHandRefusal(row: Pick<StockRow, "on_hand" | "reserved">, onHand: number): string | null {
	if (onHand < 0) return `on hand would be ${onHand}; stock never goes below zero`;
	if (onHand < row.reserved) return `on hand would be ${onHand} but ${row.reserved} units are reserved for orders; it cannot go below that`;
	return null;
}

/**
 * The alerts a change of available stock raises: falling below the threshold (low stock), and
 * reaching zero (out of stock). Each fires once per crossing: again only after stock rose back
 * to the threshold (or above zero) and fell again. A fall straight from plenty to nothing crosses both.
 */
export function alertsFor(before: number, after: number, threshold: number): Alert[] {
	const alerts: Alert[] = [];
	if (after < threshold && before >= threshold) alerts.push("low_stock");
	if (after <= 0 && before > 0) alerts.push("out_of_stock");
	return alerts;
}

export function view(row: StockRow) {
	return {
		sku: row.sku, productId: row.product_id, variantId: row.variant_id ?? null, onHand: row.on_hand, reserved: row.reserved, available: available(row),
		lowStockThreshold: row.low_stock_threshold, sellable: row.sellable ?? true
	};
}
