/**
 * The event envelope of seed 002, carried by every domain event, and the catalog of
 * event names this system emits (EVENTS.md plus our own additions, marked below).
 */
import { randomUUID } from "node:crypto";

export interface EventEnvelope<P = Record<string, unknown>> {
	event_id: string;
	event_name: string;
	aggregate_id: string;
	correlation_id: string | null;
	causation_id: string | null;
	occurred_at: string;
	version: number;
	payload: P;
}

export const EVENT_NAMES = [
	"customer.registered",
	"customer.updated",
	"customer.email_verified",
	"customer.verification_requested", // ours: carries the verification token to notifications only
	"customer.address_added",
	"customer.erased",
	"vendor.created",
	"product.created",
	"product.updated",
	"product.deleted",
	"product.activated",
	"product.deactivated",
	"category.created",
	"inventory.created",
	"inventory.quantity_set",
	"inventory.adjusted",
	"inventory.updated",
	"inventory.reserved",
	"inventory.released",
	"inventory.deducted",
	"inventory.low_stock",
	"inventory.out_of_stock",
	"cart.created",
	"cart.item_added",
	"cart.item_quantity_changed",
	"cart.item_removed",
	"cart.cleared",
	"cart.merged",
	"cart.expired",
	"cart.checked_out",
	"shipping.method_selected",
	"shipping.address_provided",
	"shipping.delivery_date_selected",
	"promotion.applied",
	"promotion.removed",
	"promotion.code_applied",
	"promotion.redeemed", // ours: a code's use taken by an order (place-order saga)
	"promotion.released", // ours: that use given back (compensation or cancel)
	"addons.availability_calculated",
	"payment.initiated",
	"payment.authorized",
	"payment.failed",
	"payment.captured",
	"payment.voided",
	"payment.refunded",
	"checkout.order_created",
	"checkout.completed",
	"checkout.failed",
	"order.placed",
	"order.confirmed",
	"order.status_changed",
	"order.shipped",
	"order.delivered",
	"order.cancelled",
	"notification.sent",
	"notification.failed"
] as const;

export type EventName = (typeof EVENT_NAMES)[number];

export function envelope<P extends Record<string, unknown>>(
	name: EventName,
	aggregateId: string,
	payload: P,
	opts: { correlationId?: string | null; causationId?: string | null; version?: number } = {}
): EventEnvelope<P> {
	return {
		event_id: randomUUID(),
		event_name: name,
		aggregate_id: aggregateId,
		correlation_id: opts.correlationId ?? null,
		causation_id: opts.causationId ?? null,
		occurred_at: new Date().toISOString(),
		version: opts.version ?? 1,
		payload
	};
}
