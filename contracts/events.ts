/**
 * Every domain event of the system in one catalogue: its name, the service that emits it, what
 * it means, and the main fields of its payload (a joi schema; more fields may follow). The
 * envelope that carries each one is below. The AsyncAPI document (`GET /api/asyncapi.json`) and
 * the event table in docs/events.md are generated from this file, and a test fails when the code
 * records or consumes an event that is not listed here.
 *
 * Adding an event is one line in EVENTS: `"thing.happened": on("service", "What it means", { field: … })`.
 */
import { randomUUID } from "node:crypto";
import Joi, { Schema as JoiSchema } from "joi";
import { uuid } from "./ids";

/** The envelope every domain event travels in; `payload` is the event's own data. */
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

export const envelopeSchema = Joi.object({
	event_id: uuid.required().description("Unique id of this event; consumers drop a repeat (inbox)"),
	event_name: Joi.string().required().description("The event's name, e.g. order.placed"),
	aggregate_id: Joi.string().required().description("Id of the thing the event is about (order, cart, SKU …)"),
	correlation_id: Joi.string().allow(null).required().description("The X-Correlation-Id of the request that started the flow"),
	causation_id: Joi.string().allow(null).required().description("The event or saga that caused this one"),
	occurred_at: Joi.string().isoDate().required().description("When it happened, ISO 8601 UTC"),
	version: Joi.number().integer().min(1).required().description("Version of the payload's shape"),
	payload: Joi.object().unknown(true).required()
});

// --- Field shapes shared by many payloads ---
const id = uuid;
const text = Joi.string();
const when = Joi.string().isoDate();
const count = Joi.number().integer();
const money = Joi.object({ amount: Joi.number().integer().required(), currency: Joi.string().length(3).required() }).description("Integer minor units + ISO 4217 currency");
const stockLines = Joi.array().items(Joi.object({ sku: text.required(), quantity: count.required() }).unknown(true));
const orderLines = Joi.array().items(Joi.object({ productId: id, sku: text, name: text, quantity: count, unitPrice: money }).unknown(true));
const stock = { sku: text.required(), productId: id, onHand: count, reserved: count, available: count };

export interface EventSpec {
	/** The service whose outbox publishes it. */
	by: string;
	summary: string;
	payload: JoiSchema;
}

function on(by: string, summary: string, fields: Record<string, JoiSchema> = {}): EventSpec {
	return { by, summary, payload: Joi.object(fields).unknown(true) };
}

export const EVENTS = {
	"customer.registered": on("customers", "A customer signed up (not verified yet)", { customerId: id.required(), email: text.required(), firstName: text, lastName: text, createdAt: when }),
	"customer.updated": on("customers", "A customer changed their profile", { customerId: id.required(), firstName: text, lastName: text, changedFields: Joi.array().items(text), updatedAt: when }),
	"customer.email_verified": on("customers", "A customer proved their email address", { customerId: id.required(), email: text, verifiedAt: when }),
	"customer.verification_requested": on("customers", "A verification token was issued; only notifications consumes it (it carries the token)", { customerId: id.required(), email: text.required(), firstName: text, token: text.required(), expiresAt: when }),
	"customer.address_added": on("customers", "A shipping address was added", { customerId: id.required(), addressId: id.required(), country: text }),
	"customer.erased": on("customers", "A customer's personal data was erased (GDPR); others anonymize what they keep", { customerId: id.required() }),
	"vendor.created": on("catalog", "A vendor was registered", { vendorId: id.required(), name: text, email: text }),
	"product.created": on("catalog", "A product was created (draft); inventory opens its stock row", { productId: id.required(), sku: text.required(), name: text, price: money, categoryId: id, vendorId: id.allow(null), status: text, initialStock: count, lowStockThreshold: count }),
	"product.updated": on("catalog", "A product's details or price changed", { productId: id.required(), sku: text }),
	"product.deleted": on("catalog", "A product was soft-deleted", { productId: id.required(), sku: text }),
	"product.activated": on("catalog", "A product went on sale", { productId: id.required(), sku: text, status: text }),
	"product.deactivated": on("catalog", "A product was taken off sale", { productId: id.required(), sku: text, status: text }),
	"category.created": on("catalog", "A category was created", { categoryId: id.required(), name: text.required(), parentCategoryId: id.allow(null), depth: count }),
	"inventory.created": on("inventory", "A stock row was opened for a SKU", { sku: text.required(), productId: id, quantity: count, lowStockThreshold: count }),
	"inventory.quantity_set": on("inventory", "An admin set the on-hand quantity", { sku: text.required(), productId: id, previousValue: count, newValue: count, reason: text }),
	"inventory.adjusted": on("inventory", "An admin adjusted the on-hand quantity by a delta", { sku: text.required(), productId: id, adjustment: count, previousValue: count, newValue: count, reason: text }),
	"inventory.updated": on("inventory", "Any change of a SKU's on-hand stock", stock),
	"inventory.reserved": on("inventory", "Stock was reserved for an order (all lines or none)", { orderId: id.required(), lines: stockLines.required() }),
	"inventory.released": on("inventory", "An order's reservation was given back", { orderId: id.required(), lines: stockLines, reason: text.allow(null, "") }),
	"inventory.deducted": on("inventory", "Reserved stock left the warehouse (shipment)", { orderId: id.required(), lines: stockLines }),
	"inventory.low_stock": on("inventory", "Available stock fell to the SKU's threshold", { ...stock, currentStock: count, threshold: count }),
	"inventory.out_of_stock": on("inventory", "Available stock fell to zero", { ...stock, currentStock: count, threshold: count }),
	"cart.created": on("carts", "A cart was opened", { cartId: id.required(), customerId: id.allow(null) }),
	"cart.item_added": on("carts", "A product was added to a cart (capped to stock)", { cartId: id.required(), customerId: id.allow(null), productId: id.required(), sku: text, quantity: count, newQuantity: count, price: money, capped: Joi.boolean() }),
	"cart.item_quantity_changed": on("carts", "A cart line's quantity changed", { cartId: id.required(), customerId: id.allow(null), itemId: id, productId: id, sku: text, oldQuantity: count, newQuantity: count }),
	"cart.item_removed": on("carts", "A line left a cart", { cartId: id.required(), customerId: id.allow(null), itemId: id, productId: id }),
	"cart.cleared": on("carts", "A cart was emptied", { cartId: id.required(), customerId: id.allow(null) }),
	"cart.merged": on("carts", "A guest cart joined a customer's cart after login", { cartId: id.required(), customerId: id, guestCartId: id }),
	"cart.expired": on("carts", "An idle cart expired", { cartId: id.required() }),
	"cart.checked_out": on("carts", "A cart became an order", { cartId: id.required(), customerId: id.allow(null), orderId: id.required(), items: Joi.array().items(Joi.object().unknown(true)) }),
	"shipping.method_selected": on("shipping", "A shipping method was chosen for a checkout", { checkoutId: id.required(), methodId: id, methodName: text, carrier: text, price: money }),
	"shipping.address_provided": on("shipping", "A checkout got its shipping address", { checkoutId: id.required(), country: text, addressId: id.allow(null) }),
	"shipping.delivery_date_selected": on("shipping", "A delivery date (and maybe express) was chosen", { checkoutId: id.required(), methodId: id, deliveryDate: text, express: Joi.boolean(), expressFee: money.allow(null), price: money }),
	"promotion.applied": on("promotions", "A promotion now applies to a checkout", { checkoutId: id.required(), promotionId: id.required(), name: text, code: text.allow(null), kind: text, value: count, discount: money }),
	"promotion.removed": on("promotions", "A promotion no longer applies to a checkout", { checkoutId: id.required(), promotionId: id, code: text.allow(null) }),
	"promotion.code_applied": on("promotions", "A customer entered a valid promo code", { checkoutId: id.required(), code: text.required(), promotionId: id, discount: money }),
	"promotion.redeemed": on("promotions", "An order took one use of a promotion (place-order saga)", { orderId: id.required(), customerId: id, promotionId: id, code: text.allow(null), redemptionId: id }),
	"promotion.released": on("promotions", "A use of a promotion was given back (compensation or cancel)", { orderId: id.required(), customerId: id, promotionId: id, code: text.allow(null), redemptionId: id, reason: text.allow(null, "") }),
	"addons.availability_calculated": on("addons", "The additional services a checkout may add were worked out", { checkoutId: id.required(), availableAddons: Joi.array(), selectedAddons: Joi.array(), totalServicesPrice: money }),
	"payment.method_selected": on("payments", "A payment method was chosen for a cart's checkout", { cartId: id.required(), customerId: id.allow(null), method: text.required(), previousMethod: text.allow(null), selectedAt: when }),
	"payment.initiated": on("payments", "A payment was started", { paymentId: id.required(), orderId: id.required(), amount: money, method: text, transactionId: text }),
	"payment.authorized": on("payments", "The provider authorized the payment (money held)", { paymentId: id.required(), orderId: id.required(), amount: money, method: text, transactionId: text }),
	"payment.failed": on("payments", "The provider refused the payment", { paymentId: id.required(), orderId: id.required(), amount: money, method: text, reason: text, type: text }),
	"payment.captured": on("payments", "Authorized money was taken (on shipment)", { paymentId: id.required(), orderId: id.required(), amount: money }),
	"payment.voided": on("payments", "An authorization was released (cancel or compensation)", { paymentId: id.required(), orderId: id.required(), amount: money, reason: text.allow(null) }),
	"payment.refunded": on("payments", "Captured money was given back, in full or in part", { paymentId: id.required(), orderId: id.required(), refundId: text, refundAmount: money, reason: text.allow(null) }),
	"checkout.totals_updated": on("checkout", "A checkout's totals changed", { checkoutId: id.required(), cartId: id, customerId: id.allow(null), cartTotal: money, promotionDiscount: money, shippingTotal: money, servicesTotal: money, grandTotal: money, currency: text }),
	"checkout.order_created": on("checkout", "A checkout produced an order", { sagaId: id, orderId: id.required() }),
	"checkout.completed": on("checkout", "A place-order saga finished: the order is confirmed and paid", { sagaId: id.required(), orderId: id.required(), orderNumber: text, customerId: id }),
	"checkout.failed": on("checkout", "A place-order saga was undone; the reason says why", { sagaId: id.required(), orderId: id, customerId: id, reason: text, type: text.allow(null), step: text.allow(null) }),
	"order.placed": on("orders", "An order was created (pending) with a snapshot of its lines and prices", { orderId: id.required(), orderNumber: text.required(), customerId: id, customerEmail: text, cartId: id, lines: orderLines, total: money, itemCount: count, status: text, createdAt: when }),
	"order.confirmed": on("orders", "An order was paid for and confirmed", { orderId: id.required(), orderNumber: text, customerId: id, paymentId: id, total: money, confirmedAt: when }),
	"order.status_changed": on("orders", "Every change of an order's status, old and new", { orderId: id.required(), orderNumber: text, customerId: id, from: text, to: text, reason: text.allow(null), at: when }),
	"order.shipped": on("orders", "An order left the warehouse", { orderId: id.required(), orderNumber: text, customerId: id, trackingNumber: text, carrier: text, shippedAt: when }),
	"order.delivered": on("orders", "An order reached its customer", { orderId: id.required(), orderNumber: text, customerId: id, deliveredAt: when }),
	"order.cancelled": on("orders", "An order was cancelled", { orderId: id.required(), orderNumber: text, customerId: id, reason: text, code: text.allow(null), lines: orderLines, total: money }),
	"notification.sent": on("notifications", "An email or SMS was delivered", { notificationId: id.required(), channel: text, to: text, template: text }),
	"notification.failed": on("notifications", "A message could not be delivered after retries", { notificationId: id.required(), channel: text, to: text, template: text, error: text })
} satisfies Record<string, EventSpec>;

export type EventName = keyof typeof EVENTS;

export const EVENT_NAMES = Object.keys(EVENTS) as EventName[];

/**
 * Integration events for systems outside the shop: published through the outbox to the topic
 * exchange `integration` with the routing key `<name>.v<version>`, persistent JSON in an envelope
 * of their own (camelCase, with the emitting service as `source`). Each one is derived from a
 * domain event (`from`). Their payloads are a public contract: fields are added, never renamed or
 * removed, without a new version.
 */
export const INTEGRATION_EXCHANGE = "integration";

export const integrationEnvelopeSchema = Joi.object({
	eventId: uuid.required().description("Unique id of this message; a consumer drops a repeat"),
	eventType: Joi.string().required().description("The integration event's name, e.g. OrderPlacedNotification"),
	version: Joi.number().integer().min(1).required().description("Version of the payload's shape (also in the routing key)"),
	occurredAt: Joi.string().isoDate().required().description("When it happened, ISO 8601 UTC"),
	correlationId: Joi.string().allow(null).required().description("The X-Correlation-Id of the request that started the flow"),
	causationId: Joi.string().allow(null).required().description("The domain event this one comes from"),
	source: Joi.string().required().description("The service that published it"),
	payload: Joi.object().unknown(true).required()
});

export interface IntegrationEventSpec {
	from: EventName;
	version: number;
	summary: string;
	payload: JoiSchema;
}

function integration(from: EventName, summary: string, fields: Record<string, JoiSchema>): IntegrationEventSpec {
	return { from, version: 1, summary, payload: Joi.object(fields).unknown(true) };
}

export const INTEGRATION_EVENTS = {
	OrderPlacedNotification: integration("order.placed", "An order was placed", { orderId: id.required(), orderNumber: text.required(), customerId: id, totalAmount: money, itemCount: count }),
	OrderShippedNotification: integration("order.shipped", "An order was shipped", { orderId: id.required(), orderNumber: text, customerId: id, trackingNumber: text, carrier: text }),
	OrderCancelledNotification: integration("order.cancelled", "An order was cancelled", { orderId: id.required(), orderNumber: text, customerId: id, reason: text, refundAmount: money.allow(null) }),
	LowStockNotification: integration("inventory.low_stock", "A product runs low", { productId: id.required(), productName: text.allow(null), sku: text, currentStock: count, threshold: count }),
	OutOfStockNotification: integration("inventory.out_of_stock", "A product sold out", { productId: id.required(), productName: text.allow(null), sku: text }),
	CustomerRegisteredNotification: integration("customer.registered", "A customer signed up", { customerId: id.required(), email: text, firstName: text }),
	PaymentFailedNotification: integration("payment.failed", "A payment was refused", { orderId: id.required(), customerId: id.allow(null), paymentId: id, amount: money, failureReason: text }),
	RefundProcessedNotification: integration("payment.refunded", "Money was refunded", { orderId: id.required(), customerId: id.allow(null), paymentId: id, refundAmount: money, refundId: text })
} satisfies Record<string, IntegrationEventSpec>;

export type IntegrationEventName = keyof typeof INTEGRATION_EVENTS;

/** `OrderPlacedNotification` → `OrderPlacedNotification.v1`. */
export function integrationRoutingKey(name: IntegrationEventName): string {
	return `${name}.v${INTEGRATION_EVENTS[name].version}`;
}

/**
 * Who consumes what: for each event, the services (consumer groups) that handle it through a
 * channel. Every process that publishes declares this topology in RabbitMQ before its first
 * publish (exchange `<namespace>.<event>`, durable queue `<service>.<namespace>.<event>`
 * bound to it), so an event sent before its consumer ever started waits in the consumer's
 * queue. A service that adds a `channels` handler adds itself here (a unit test compares).
 */
export const EVENT_CONSUMERS: Readonly<Partial<Record<EventName, readonly string[]>>> = {
	"customer.registered": ["notifications"],
	"customer.updated": ["notifications"],
	"customer.verification_requested": ["notifications"],
	"customer.erased": ["notifications", "orders"],
	"product.created": ["inventory"],
	"product.updated": ["carts", "inventory"],
	"product.deleted": ["carts", "inventory"],
	"product.activated": ["inventory"],
	"product.deactivated": ["carts", "inventory"],
	"inventory.created": ["catalog"],
	"inventory.updated": ["catalog"],
	"inventory.low_stock": ["notifications"],
	"inventory.out_of_stock": ["notifications"],
	"cart.item_added": ["checkout"],
	"cart.item_quantity_changed": ["checkout"],
	"cart.item_removed": ["checkout"],
	"cart.cleared": ["checkout"],
	"cart.expired": ["notifications"],
	"order.placed": ["checkout", "notifications"],
	"order.confirmed": ["notifications"],
	"order.shipped": ["notifications"],
	"order.cancelled": ["notifications"],
	"payment.authorized": ["checkout"],
	"payment.failed": ["checkout", "notifications"],
	"payment.refunded": ["notifications"]
};

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
