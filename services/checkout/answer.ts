/** What `POST /api/checkout/place` answers for a saga in a given state. */
import type { SagaRecord } from "../../sagas";
import type { PlaceOrderData } from "../../sagas/place-order.saga";
import { isPaymentFailure } from "../../contracts/payments";

/** A saga that failed while locking the cart placed nothing: the request is refused outright. */
export function refusalAtLock(rec: SagaRecord<PlaceOrderData>): { type: string; message: string } | null {
	if (rec.status !== "compensated" || rec.failure?.step !== "lockCart") return null;
	return { type: rec.failure.type ?? "CART_LOCKED", message: rec.failure.message };
}

/** True when the saga failed because the payment was refused (a declined card, a BLIK code the bank rejected): the order is payment_failed, as orders.fail decides. */
export function paymentFailed(rec: SagaRecord<PlaceOrderData>): boolean {
	return rec.status === "compensated" && isPaymentFailure(rec.failure?.type);
}

export function orderStatus(rec: SagaRecord<PlaceOrderData>): string {
	switch (rec.status) {
		case "completed":
			return "confirmed";
		case "compensated":
			return paymentFailed(rec) ? "payment_failed" : "cancelled";
		default:
			// BLIK and PayPal: the order waits for the bank's answer once it was marked so.
			return rec.completedSteps.includes("markAwaitingPayment") && !rec.failure ? "awaiting_payment" : "pending";
	}
}

function paymentStatus(rec: SagaRecord<PlaceOrderData>, status: string): string {
	if (status === "confirmed") return "authorized";
	if (paymentFailed(rec)) return "failed";
	if (status === "pending" || status === "awaiting_payment") return "pending";
	return rec.data.paymentId ? "voided" : "none";
}

export function placeAnswer(rec: SagaRecord<PlaceOrderData>) {
	const status = orderStatus(rec);
	const d = rec.data;
	return {
		orderId: d.orderId,
		orderNumber: d.orderNumber ?? null,
		status,
		total: d.total ?? null,
		totals: d.totals ?? null,
		payment: {
			method: d.paymentMethod ?? "card",
			status: paymentStatus(rec, status),
			amount: d.total ?? null,
			transactionId: d.transactionId ?? null,
			...(d.last4 ? { last4: d.last4 } : {}),
			...(d.paymentMethod === "paypal" ? { redirectUrl: d.redirectUrl ?? null } : {})
		},
		checkout: { sagaId: rec.id, state: rec.state, status: rec.status, reason: rec.failure?.message ?? rec.parkedReason ?? null, failure: rec.failure?.type ?? null }
	};
}
