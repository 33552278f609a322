/**
 * The order lifecycle as data: which status may follow which, and what a request to move an
 * order answers. Pure functions, no broker: test/unit/order-status.test.ts checks every pair.
 *
 *   pending ──► awaiting_payment ──► confirmed ──► shipped ──► delivered
 *      │               │                 │
 *      ├──► cancelled ◄┴─────────────────┘   (cancel before shipment)
 *      └──► payment_failed ◄─ awaiting_payment
 */

import { isPaymentFailure, PAYMENT_FAILURES } from "../../contracts/payments";

export const ORDER_STATUSES = ["pending", "awaiting_payment", "confirmed", "shipped", "delivered", "cancelled", "payment_failed"] as const;

export type OrderStatus = (typeof ORDER_STATUSES)[number];

const NEXT: Record<OrderStatus, readonly OrderStatus[]> = {
	pending: ["awaiting_payment", "confirmed", "cancelled", "payment_failed"],
	awaiting_payment: ["confirmed", "cancelled", "payment_failed"],
	confirmed: ["shipped", "cancelled"],
	shipped: ["delivered"],
	delivered: [],
	cancelled: [],
	payment_failed: []
};

/** True when an order in `from` may move to `to`. */
export function canTransition(from: OrderStatus, to: OrderStatus): boolean {
	return NEXT[from].includes(to);
}

export function allowedNext(from: OrderStatus): readonly OrderStatus[] {
	return NEXT[from];
}

export type Decision = "apply" | "noop" | "refuse";

/**
 * What a request to move an order from `from` to `to` does: `apply` the transition, `noop`
 * when the order is already there (a repeated confirm/ship/deliver answers the order as it
 * is), `refuse` otherwise (409 INVALID_TRANSITION, nothing changes).
 */
export function decide(from: OrderStatus, to: OrderStatus): Decision {
	if (from === to) return "noop";
	return canTransition(from, to) ? "apply" : "refuse";
}

/**
 * The refusals of a payment provider, and a payment the buyer never completed in time (the
 * payment is the only step that waits for a deadline): an order failed for one of them is
 * `payment_failed`.
 */
export const PAYMENT_FAILURE_CODES = PAYMENT_FAILURES;

/** The status `orders.fail` gives an order: `payment_failed` for a payment refusal, else `cancelled`. */
export function failureStatus(code?: string | null): "payment_failed" | "cancelled" {
	return isPaymentFailure(code) ? "payment_failed" : "cancelled";
}

/**
 * `orders.fail` is the compensation of creating an order: it ends an order that was never
 * confirmed. An order already ended (payment_failed or cancelled) is left as it is; a
 * confirmed, shipped or delivered order is refused — cancelling those is another process.
 */
export function decideFailure(from: OrderStatus, code?: string | null): { decision: Decision; to: OrderStatus } {
	const to = failureStatus(code);
	if (from === "cancelled" || from === "payment_failed") return { decision: "noop", to: from };
	if (from === "pending" || from === "awaiting_payment") return { decision: "apply", to };
	return { decision: "refuse", to };
}

/** Human-readable, unique order number from the sequence value: `SC-2026-000042` (never truncated). */
export function formatOrderNumber(year: number, seq: number): string {
	return `SC-${year}-${String(seq).padStart(6, "0")}`;
}
