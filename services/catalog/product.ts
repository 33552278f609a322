/** Catalog rules that need no broker. */
export const MAX_CATEGORY_DEPTH = 3;

/** The fields a PATCH may change, by their API names. */
export const EDITABLE_FIELDS = ["name", "description", "price", "categoryId", "vendorId"] as const;
export type EditableField = (typeof EDITABLE_FIELDS)[number];

export function depthUnder(parent: { depth: number } | null): number {
	return parent ? parent.depth + 1 : 1;
}

export interface VariantRow {
	id: string;
	product_id: string;
	sku: string;
	name: string;
	attributes: Record<string, string> | string;
	position: number;
}

/**
 * A product as the API shows it. With `stock` (available units per SKU) it carries `available`:
 * its own SKU's, or the sum of its variants'.
 */
export function productView(row: any, stock?: Map<string, number>, variants: VariantRow[] = []) {
	const vs = variants.map(v => ({
		id: v.id,
		sku: v.sku,
		name: v.name,
		attributes: typeof v.attributes === "string" ? JSON.parse(v.attributes) : v.attributes,
		...(stock ? { available: stock.get(v.sku) ?? 0 } : {})
	}));
	const available = stock ? (vs.length > 0 ? vs.reduce((n, v) => n + (v.available ?? 0), 0) : (stock.get(row.sku) ?? 0)) : undefined;
	return {
		id: row.id,
		sku: row.sku,
		name: row.name,
		description: row.description,
		price: { amount: Number(row.price_amount), currency: row.price_currency },
		categoryId: row.category_id,
		vendorId: row.vendor_id,
		status: row.status,
		variants: vs,
		createdAt: row.created_at,
		updatedAt: row.updated_at,
		...(row.deleted_at ? { deletedAt: row.deleted_at } : {}),
		...(available === undefined ? {} : { available })
	};
}

/** The SKUs whose stock a product has: its variants', or its own when it has none. */
export function skusOf(row: { sku: string }, variants: Array<{ sku: string }>): string[] {
	return variants.length > 0 ? variants.map(v => v.sku) : [row.sku];
}

/**
 * What a PATCH changes: each field whose value differs, as `{ from, to }` in API terms, and
 * the row columns to write. Fields sent with their current value are no change.
 */
export function diffProduct(row: any, patch: Partial<Record<EditableField, any>>) {
	const current: Record<EditableField, unknown> = {
		name: row.name,
		description: row.description,
		price: { amount: Number(row.price_amount), currency: row.price_currency },
		categoryId: row.category_id,
		vendorId: row.vendor_id ?? null
	};
	const changedFields: Record<string, { from: unknown; to: unknown }> = {};
	const columns: Record<string, unknown> = {};
	for (const field of EDITABLE_FIELDS) {
		if (!(field in patch)) continue;
		const to = patch[field] ?? null;
		if (JSON.stringify(to) === JSON.stringify(current[field])) continue;
		changedFields[field] = { from: current[field], to };
		if (field === "price") Object.assign(columns, { price_amount: to.amount, price_currency: to.currency });
		else if (field === "categoryId") columns.category_id = to;
		else if (field === "vendorId") columns.vendor_id = to;
		else columns[field] = to;
	}
	return { changedFields, columns };
}

export interface CategoryNode {
	id: string;
	name: string;
	depth: number;
	parentId: string | null;
	children: CategoryNode[];
}

export function categoryTree(rows: Array<{ id: string; name: string; depth: number; parent_id: string | null }>): CategoryNode[] {
	const nodes = new Map<string, CategoryNode>(rows.map(r => [r.id, { id: r.id, name: r.name, depth: r.depth, parentId: r.parent_id, children: [] }]));
	const roots: CategoryNode[] = [];
	for (const n of nodes.values()) {
		const parent = n.parentId ? nodes.get(n.parentId) : undefined;
		if (parent) parent.children.push(n);
		else roots.push(n);
	}
	return roots;
}

/** A category and every category under it. */
export function withDescendants(rows: Array<{ id: string; parent_id: string | null }>, id: string): string[] {
	const out = [id];
	for (let i = 0; i < out.length; i++) for (const r of rows) if (r.parent_id === out[i]) out.push(r.id);
	return out;
}
