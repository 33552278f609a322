/**
 * A payment as stored and as answered, and the rule of how much may still be refunded.
 * Pure functions. A payment never holds a card number: only its token, brand and last four.
 */
import type { Money } from "../../contracts/money";

export const PAYMENT_STATUSES = ["pending", "authorized", "failed", "voided", "captured", "partially_refunded", "refunded"] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

export const PAYMENT_METHODS = ["card", "blik", "paypal"] as const;
export type PaymentMethod = (typeof PAYMENT_METHODS)[number];

/**
 * Statuses in which a payment waits for the buyer, holds or took the order's money: at most
 * one payment per order is in one of them.
 */
export const ACTIVE_STATUSES: readonly PaymentStatus[] = ["pending", "authorized", "captured", "partially_refunded", "refunded"];
/** Statuses from which money can be refunded. */
export const REFUNDABLE_STATUSES: readonly PaymentStatus[] = ["captured", "partially_refunded"];

export interface PaymentRow {
	id: string;
	order_id: string;
	method: string;
	status: PaymentStatus;
	amount: string | number;
	currency: string;
	captured_amount: string | number;
	refunded_amount: string | number;
	brand: string | null;
	last4: string | null;
	provider_ref: string | null;
	customer_id: string | null;
	return_url: string | null;
	cancel_url: string | null;
	redirect_url: string | null;
	failure_type: string | null;
	failure_reason: string | null;
	void_reason: string | null;
	created_at: Date | string;
	updated_at: Date | string;
	authorized_at: Date | string | null;
	captured_at: Date | string | null;
	voided_at: Date | string | null;
}

export interface RefundRow {
	id: string;
	payment_id: string;
	amount: string | number;
	currency: string;
	reason: string | null;
	created_at: Date | string;
}

const iso = (t: Date | string | null) => (t === null ? null : new Date(t).toISOString());

export function toPayment(row: PaymentRow, refunds: RefundRow[] = []) {
	const m = (amount: string | number): Money => ({ amount: Number(amount), currency: row.currency });
	return {
		paymentId: row.id,
		orderId: row.order_id,
		method: row.method,
		status: row.status,
		/** The provider's reference of this payment (authorization, BLIK transaction, PayPal token). */
		transactionId: row.provider_ref,
		amount: m(row.amount),
		capturedAmount: m(row.captured_amount),
		refundedAmount: m(row.refunded_amount),
		captured: m(row.captured_amount),
		refunded: m(row.refunded_amount),
		customerId: row.customer_id,
		/** PayPal: where the buyer approves the payment. */
		redirectUrl: row.redirect_url,
		brand: row.brand,
		last4: row.last4,
		failure: row.failure_type ? { type: row.failure_type, reason: row.failure_reason } : null,
		voidReason: row.void_reason,
		refunds: refunds.map(r => ({ refundId: r.id, amount: { amount: Number(r.amount), currency: r.currency }, reason: r.reason, createdAt: iso(r.created_at) })),
		createdAt: iso(row.created_at),
		updatedAt: iso(row.updated_at),
		authorizedAt: iso(row.authorized_at),
		capturedAt: iso(row.captured_at),
		voidedAt: iso(row.voided_at)
	};
}

export type Payment = ReturnType<typeof toPayment>;

export type RefundCheck =
	| { ok: true; amount: Money; refundedAfter: number; status: PaymentStatus }
	| { ok: false; reason: "currency"; message: string }
	| { ok: false; reason: "exceeds"; message: string; remaining: number };

/** How much a refund gives back (all that remains when no amount is asked) and the payment's status after it. */
export function checkRefund(captured: number, refunded: number, currency: string, requested?: Money): RefundCheck {
	const remaining = captured - refunded;
	if (requested && requested.currency !== currency) {
		return { ok: false, reason: "currency", message: `The payment is in ${currency}, the refund was asked in ${requested.currency}` };
	}
	const amount = requested ? requested.amount : remaining;
	if (amount <= 0 || amount > remaining) {
		return { ok: false, reason: "exceeds", remaining, message: `A refund cannot exceed the captured amount: ${remaining} of ${captured} ${currency} remain refundable` };
	}
	const refundedAfter = refunded + amount;
	return { ok: true, amount: { amount, currency }, refundedAfter, status: refundedAfter === captured ? "refunded" : "partially_refunded" };
}
