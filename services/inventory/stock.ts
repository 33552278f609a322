/** Stock rules that need no broker: can an order be reserved, and which alerts a change raises. */

export interface StockRow {
	sku: string;
	product_id: string;
	on_hand: number;
	reserved: number;
	low_stock_threshold: number;
}

export interface Line {
	sku: string;
	quantity: number;
}

export type Plan = { ok: true } | { ok: false; sku: string; requested: number; available: number };

export function available(row: Pick<StockRow, "on_hand" | "reserved">): number {
	return row.on_hand - row.reserved;
}

/** All lines or none: the first line that cannot be covered refuses the whole order. */
export function planReservation(rows: StockRow[], lines: Line[]): Plan {
	const bySku = new Map(rows.map(r => [r.sku, r]));
	const wanted = new Map<string, number>();
	for (const l of lines) wanted.set(l.sku, (wanted.get(l.sku) ?? 0) + l.quantity);
	for (const [sku, requested] of wanted) {
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

/** The alerts a change of available stock raises: crossing down to the threshold, and hitting zero. */
export function alertsFor(before: number, after: number, threshold: number): Array<"low_stock" | "out_of_stock"> {
	const alerts: Array<"low_stock" | "out_of_stock"> = [];
	if (after <= 0 && before > 0) alerts.push("out_of_stock");
	else if (after <= threshold && before > threshold) alerts.push("low_stock");
	return alerts;
}

export function view(row: StockRow) {
	return { sku: row.sku, productId: row.product_id, onHand: row.on_hand, reserved: row.reserved, available: available(row), lowStockThreshold: row.low_stock_threshold };
}
