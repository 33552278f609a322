/**
 * How promotions combine — the one rule of this shop:
 *
 * 1. The best automatic promotion. Promotions without a code apply by themselves; of those that
 *    apply to the cart, only the one giving the largest discount counts (a tie: the older one).
 * 2. Plus at most one code, taken from what the lines cost after step 1.
 * 3. Each promotion discounts only the lines in its scope: its products and categories (a line
 *    is in scope when either list names it), every line when it names none. A percentage takes
 *    that percent of the scope lines' amount, rounded half up to a minor unit; a fixed amount
 *    takes that amount, but never more than the scope lines' amount. The discount is split over
 *    the scope lines in proportion to their amounts by the allocator (contracts/allocate.ts).
 * 4. A promotion applies when it is active, now is within validFrom..validTo, the cart total
 *    before any discount is at least minCartTotal, the cart is in the promotion's currency (a
 *    percentage without a minimum applies in any currency), at least one line is in scope, and —
 *    for a code — its total and per-customer uses are not used up.
 * 5. So the discount never exceeds the lines' total, and no line goes below zero.
 *
 * Pure functions: no database, no clock (the caller passes `now`).
 */
import { allocate } from "../../contracts/allocate";
import type { CodeStatus, EvaluateReply, Promotion, PromotionLine } from "../../contracts/promotions";

export interface CodeCandidate {
	/** The promotion the code names, null when no promotion has that code. */
	promotion: Promotion | null;
	/** How many uses this customer holds already (0 for a guest or unknown customer). */
	customerUses: number;
}

/** Why a promotion does not apply now, regardless of the cart; null when it is live. */
export function liveness(p: Promotion, now: Date): "expired" | "not_applicable" | null {
	if (!p.active) return "expired";
	if (p.validTo && now > new Date(p.validTo)) return "expired";
	if (p.validFrom && now < new Date(p.validFrom)) return "not_applicable";
	return null;
}

export function inScope(p: Pick<Promotion, "productIds" | "categoryIds">, line: PromotionLine): boolean {
	if (p.productIds.length === 0 && p.categoryIds.length === 0) return true;
	return p.productIds.includes(line.productId) || (!!line.categoryId && p.categoryIds.includes(line.categoryId));
}

/** Whether `p` applies to these lines at all (rule 4 without liveness and usage). */
export function appliesTo(p: Promotion, lines: PromotionLine[], currency: string, subtotal: number): boolean {
	const needsCurrency = p.kind === "fixed" || p.minCartTotal !== null;
	if (needsCurrency && p.currency !== currency) return false;
	if (p.minCartTotal && subtotal < p.minCartTotal.amount) return false;
	return lines.some(l => inScope(p, l));
}

/** The per-line discount `p` gives on lines that cost `remaining` (rule 3). */
export function discountOf(p: Promotion, lines: PromotionLine[], remaining: number[]): number[] {
	const scope = lines.map((l, i) => (inScope(p, l) ? i : -1)).filter(i => i >= 0);
	const base = scope.reduce((a, i) => a + remaining[i]!, 0);
	const total = p.kind === "percentage" ? Math.floor((base * p.value + 50) / 100) : Math.min(p.value, base);
	const parts = allocate(Math.min(total, base), scope.map(i => remaining[i]!));
	const out = lines.map(() => 0);
	scope.forEach((i, k) => (out[i] = parts[k]!));
	return out;
}

export function evaluate(automatic: Promotion[], code: CodeCandidate | null, lines: PromotionLine[], currency: string, now: Date): EvaluateReply {
	const amounts = lines.map(l => l.quantity * l.unitPrice.amount);
	const subtotal = amounts.reduce((a, b) => a + b, 0);
	const applied: EvaluateReply["promotions"] = [];
	let remaining = amounts;

	let best: { p: Promotion; parts: number[]; sum: number } | null = null;
	const byAge = [...automatic].sort((a, b) => (a.createdAt === b.createdAt ? a.id.localeCompare(b.id) : a.createdAt < b.createdAt ? -1 : 1));
	for (const p of byAge) {
		if (p.code !== null || liveness(p, now) || !appliesTo(p, lines, currency, subtotal)) continue;
		const parts = discountOf(p, lines, remaining);
		const sum = parts.reduce((a, b) => a + b, 0);
		if (sum > 0 && (!best || sum > best.sum)) best = { p, parts, sum };
	}
	if (best) {
		applied.push({ promotionId: best.p.id, name: best.p.name, kind: best.p.kind, value: best.p.value, discount: { amount: best.sum, currency } });
		remaining = remaining.map((r, i) => r - best.parts[i]!);
	}

	let codeStatus: CodeStatus | undefined;
	if (code) {
		codeStatus = codeStatusOf(code, lines, currency, subtotal, now);
		if (codeStatus === "applied") {
			const p = code.promotion!;
			const parts = discountOf(p, lines, remaining);
			const sum = parts.reduce((a, b) => a + b, 0);
			if (sum === 0) codeStatus = "not_applicable";
			else {
				applied.push({ promotionId: p.id, name: p.name, code: p.code!, kind: p.kind, value: p.value, discount: { amount: sum, currency } });
				remaining = remaining.map((r, i) => r - parts[i]!);
			}
		}
	}

	const discount = subtotal - remaining.reduce((a, b) => a + b, 0);
	return {
		subtotal: { amount: subtotal, currency },
		discount: { amount: discount, currency },
		total: { amount: subtotal - discount, currency },
		promotions: applied,
		lineDiscounts: lines.map((l, i) => ({ productId: l.productId, amount: amounts[i]! - remaining[i]! })),
		...(codeStatus ? { codeStatus } : {})
	};
}

export function codeStatusOf(code: CodeCandidate, lines: PromotionLine[], currency: string, subtotal: number, now: Date): CodeStatus {
	const p = code.promotion;
	if (!p) return "unknown";
	const dead = liveness(p, now);
	if (dead) return dead;
	if (usedUp(p, code.customerUses)) return "used_up";
	if (!appliesTo(p, lines, currency, subtotal)) return "not_applicable";
	return "applied";
}

export function usedUp(p: Pick<Promotion, "usageLimit" | "perCustomerLimit" | "uses">, customerUses: number): boolean {
	return (p.usageLimit !== null && p.uses >= p.usageLimit) || (p.perCustomerLimit !== null && customerUses >= p.perCustomerLimit);
}

/** Codes are stored and compared in upper case. */
export function normalizeCode(code: string): string {
	return code.trim().toUpperCase();
}

export function promotionView(row: any): Promotion {
	const list = (v: unknown): string[] => (typeof v === "string" ? JSON.parse(v) : ((v as string[] | null) ?? []));
	const iso = (v: unknown) => (v === null || v === undefined ? null : new Date(v as string).toISOString());
	return {
		id: row.id,
		name: row.name,
		code: row.code,
		kind: row.kind,
		value: Number(row.value),
		currency: row.currency,
		minCartTotal: row.min_cart_total === null || row.min_cart_total === undefined ? null : { amount: Number(row.min_cart_total), currency: row.currency },
		productIds: list(row.product_ids),
		categoryIds: list(row.category_ids),
		validFrom: iso(row.valid_from),
		validTo: iso(row.valid_to),
		usageLimit: row.usage_limit ?? null,
		perCustomerLimit: row.per_customer_limit ?? null,
		uses: Number(row.uses),
		active: row.active,
		createdAt: iso(row.created_at)!,
		updatedAt: iso(row.updated_at)!
	};
}
