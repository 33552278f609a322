/** Catalog rules that need no broker. */
export const MAX_CATEGORY_DEPTH = 3;

export function depthUnder(parent: { depth: number } | null): number {
	return parent ? parent.depth + 1 : 1;
}

/**
 * A product as the API shows it; with its stock when asked for: `available` (a number, 0 for a
 * SKU inventory does not know) and `stockKnown` — `available: null, stockKnown: false` when
 * inventory could not be asked, never a made-up 0 that would read as "sold out".
 */
export function productView(row: any, available?: number | null) {
	return {
		id: row.id,
		sku: row.sku,
		name: row.name,
		description: row.description,
		price: { amount: Number(row.price_amount), currency: row.price_currency },
		categoryId: row.category_id,
		vendorId: row.vendor_id,
		status: row.status,
		createdAt: row.created_at,
		updatedAt: row.updated_at,
		...(available === undefined ? {} : { available, stockKnown: available !== null })
	};
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
