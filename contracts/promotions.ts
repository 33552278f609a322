/**
 * The promotions service's actions as other services call them: parameter and reply types.
 * (The joi schemas that enforce them live in the service; the combining rule in
 * services/promotions/rules.ts and docs/promotions.md.)
 */
import type { Money } from "./money";

export type PromotionKind = "percentage" | "fixed";

export interface Promotion {
	id: string;
	name: string;
	/** Upper case; null for an automatic promotion. Codes match regardless of case. */
	code: string | null;
	kind: PromotionKind;
	/** A percent (1–100) or an amount in minor units of `currency`. */
	value: number;
	currency: string;
	minCartTotal: Money | null;
	productIds: string[];
	categoryIds: string[];
	validFrom: string | null;
	validTo: string | null;
	/** Codes only: how many orders may use the code in all, and per customer. */
	usageLimit: number | null;
	perCustomerLimit: number | null;
	/** Orders holding a use of the code now (redeemed, not released). */
	uses: number;
	active: boolean;
	createdAt: string;
	updatedAt: string;
}

export interface PromotionLine {
	productId: string;
	categoryId?: string | null;
	quantity: number;
	unitPrice: Money;
}

export type CodeStatus = "applied" | "unknown" | "expired" | "not_applicable" | "used_up";

/** `promotions.evaluate`: what the cart's promotions take off. Pure: changes nothing. */
export interface EvaluateParams {
	customerId?: string;
	code?: string;
	lines: PromotionLine[];
	currency: string;
}
export interface AppliedPromotion {
	promotionId: string;
	name: string;
	code?: string;
	kind: PromotionKind;
	value: number;
	discount: Money;
}
export interface EvaluateReply {
	subtotal: Money;
	discount: Money;
	total: Money;
	promotions: AppliedPromotion[];
	/** One per input line, in input order. */
	lineDiscounts: Array<{ productId: string; amount: number }>;
	codeStatus?: CodeStatus;
}

/**
 * `promotions.recalculate` (the checkout calls it when the cart changes), `applyCode` (the
 * customer enters a code: refused with 422 PROMO_CODE_INVALID or 409 PROMO_CODE_USED_UP when it
 * does not apply) and `removeCode`. Each compares with what was applied to this checkout before
 * and records `promotion.applied` / `promotion.removed` for the differences; applyCode also
 * records `promotion.code_applied`. They answer the evaluation.
 */
export interface RecalculateParams extends EvaluateParams {
	checkoutId: string;
}
export type ApplyCodeParams = RecalculateParams & { code: string };
export type RemoveCodeParams = Omit<RecalculateParams, "code">;
export type CheckoutPromotionsReply = EvaluateReply & { checkoutId: string };

/** `promotions.redeem` (place-order saga): takes one use of the code for the order, or 409 PROMO_CODE_USED_UP / PROMO_CODE_INVALID. */
export interface RedeemParams {
	orderId: string;
	customerId: string;
	code: string;
	idempotencyKey?: string;
}
export interface RedeemReply {
	redemptionId: string;
	promotionId: string;
	orderId: string;
	code: string;
}

/** `promotions.release` (compensation, cancel): gives the order's use back; an order that never redeemed is a no-op (and may not redeem afterwards). */
export interface ReleaseParams {
	orderId: string;
	reason?: string;
	idempotencyKey?: string;
}
export interface ReleaseReply {
	orderId: string;
	/** True when the order held a use and it is given back (now or by an earlier release). */
	released: boolean;
	status: "released" | "none";
	redemptionId: string | null;
	promotionId: string | null;
}
