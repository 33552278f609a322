/** What `POST /api/checkout/place` answers for a saga in a given state. */
import type { SagaRecord } from "../../sagas";
import type { PlaceOrderData } from "../../sagas/place-order.saga";

/** A saga that failed while locking the cart placed nothing: the request is refused outright. */
export function refusalAtLock(rec: SagaRecord<PlaceOrderData>): { type: string; message: string } | null {
	if (rec.status !== "compensated" || rec.failure?.step !== "lockCart") return null;
	return { type: rec.failure.type ?? "CART_LOCKED", message: rec.failure.message };
}

export function orderStatus(rec: SagaRecord<PlaceOrderData>, paymentTypes: Set<string>): string {
	switch (rec.status) {
		case "completed":
			return "confirmed";
		case "compensated":
			return paymentTypes.has(rec.failure?.type ?? "") ? "payment_failed" : "cancelled";
		default:
			return "pending";
	}
}

export function placeAnswer(rec: SagaRecord<PlaceOrderData>, paymentTypes: Set<string>) {
	const status = orderStatus(rec, paymentTypes);
	const d = rec.data;
	return {
		orderId: d.orderId,
		orderNumber: d.orderNumber ?? null,
		status,
		total: d.total ?? null,
		payment: {
			method: "card",
			last4: d.last4 ?? null,
			status: status === "confirmed" ? "authorized" : rec.failure && paymentTypes.has(rec.failure.type ?? "") ? "failed" : status === "pending" ? "pending" : "voided"
		},
		checkout: { sagaId: rec.id, state: rec.state, status: rec.status, reason: rec.failure?.message ?? rec.parkedReason ?? null }
	};
}
