/**
 * cancel-order: an order not yet shipped is cancelled, and everything it held is given back.
 *
 *   release the stock → void the payment, or refund it when it was captured
 *   → give the promo code's use back → mark the order cancelled (order.cancelled)
 *
 * Releasing the stock is the point of no return: when it is refused (the order shipped
 * meanwhile) nothing has changed and the cancellation fails; once it succeeded every other
 * step retries until it succeeds — an order half cancelled is never left behind.
 */
import { Inventory, Orders, Payments, Promotions } from "../contracts/actions";
import type { Money } from "../contracts/money";
import { saga } from "./definition";

export interface CancelOrderData {
	sagaId: string;
	orderId: string;
	reason: string;
	/** Who asked: the customer's or the admin's id. */
	requestedBy: string;
	/** The payment as it stood when the cancellation began (none: the order was never paid). */
	payment: { status: string; captured: Money | null; refunded: Money | null } | null;
	refundAmount?: Money;
	refundId?: string;
}

/** What is captured and not yet refunded goes back to the customer. */
export function refundDue(d: CancelOrderData): Money | null {
	const p = d.payment;
	if (!p?.captured || p.captured.amount === 0) return null;
	const due = p.captured.amount - (p.refunded?.amount ?? 0);
	return due > 0 ? { amount: due, currency: p.captured.currency } : null;
}

export const cancelOrder = saga<CancelOrderData>("cancel-order")
	.step("releaseStock", {
		invoke: Inventory.release,
		params: d => ({ orderId: d.orderId, reason: d.reason }),
		pivot: true
	})
	.step("voidPayment", {
		when: d => !!d.payment && !refundDue(d) && ["authorized", "pending"].includes(d.payment.status),
		invoke: Payments.void,
		params: d => ({ orderId: d.orderId, reason: d.reason })
	})
	.step("refundPayment", {
		when: d => !!refundDue(d),
		invoke: Payments.refund,
		params: d => ({ orderId: d.orderId, amount: refundDue(d)!, reason: d.reason }),
		onReply: (d, r) => ({ ...d, refundAmount: refundDue(d)!, refundId: r.refundId })
	})
	.step("releasePromotion", {
		invoke: Promotions.release,
		params: d => ({ orderId: d.orderId, reason: d.reason })
	})
	.step("markCancelled", {
		invoke: Orders.markCancelled,
		params: d => ({ orderId: d.orderId, reason: d.reason, ...(d.refundAmount ? { refundAmount: d.refundAmount } : {}) })
	});
