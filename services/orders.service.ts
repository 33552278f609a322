/**
 * orders — orders, their numbers, their status lifecycle and its history.
 *
 * The place-order saga creates an order (`pending`, its lines and prices a snapshot), then
 * confirms it or — as its compensation — fails it (`payment_failed` / `cancelled`). Operators
 * ship and deliver it. Every change of status is one transaction: the order row, a history
 * entry and its events (outbox). The allowed moves live in `orders/status.ts`.
 */
import Joi from "joi";
import { createHash } from "node:crypto";
import type { Knex } from "knex";
import { conflict, forbidden, notFound, temporary, validationError } from "../contracts/errors";
import { page, pageSize } from "../contracts/paging";
import { moneySchema } from "../contracts/money";
import type { EventEnvelope } from "../contracts/events";
import { DbMixin, type Trx } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { Ctx, defineService, ServiceThis } from "../infra/service";
import { HistoryRow, LineRow, Order, OrderPayment, OrderRow, OrderSnapshot, priceLines, toOrder } from "./orders/order";
import { decide, decideFailure, formatOrderNumber, ORDER_STATUSES, OrderStatus } from "./orders/status";
import { uuid } from "../contracts/ids";

const idempotencyKey = Joi.string().max(200);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const lineSchema = Joi.object({
	productId: uuid.required(),
	sku: Joi.string().min(1).max(100).required(),
	name: Joi.string().min(1).max(300).required(),
	quantity: Joi.number().integer().min(1).max(10_000).required(),
	unitPrice: moneySchema.required()
});

/** An amount of the checkout's totals: minor units (the currency is the totals'), or Money. */
const totalAmount = Joi.alternatives(Joi.number().integer().min(0).max(100_000_000_00), moneySchema);
const named = { id: Joi.string().min(1).max(100).required(), name: Joi.string().min(1).max(300).required(), price: moneySchema.required() };

/** What the checkout decided, stored with the order as it was (all optional: a bare order has lines only). */
const snapshotSchema = {
	shippingAddress: Joi.object().max(30).allow(null),
	shippingMethod: Joi.object({ ...named, carrier: Joi.string().max(100).allow(null, "") }).unknown(true).allow(null),
	deliveryDate: Joi.string().pattern(/^\d{4}-\d{2}-\d{2}$/).allow(null).messages({ "string.pattern.base": "'deliveryDate' must be a date, YYYY-MM-DD" }),
	express: Joi.boolean(),
	addons: Joi.array().items(Joi.object(named).unknown(true)).max(50),
	promotions: Joi.array()
		.items(Joi.object({ promotionId: Joi.string().min(1).max(100).required(), code: Joi.string().max(100).allow(null, ""), name: Joi.string().min(1).max(300).required(), discount: moneySchema.required() }).unknown(true))
		.max(20),
	totals: Joi.object({
		cartTotal: totalAmount.required(),
		promotionDiscount: totalAmount.required(),
		shippingTotal: totalAmount.required(),
		servicesTotal: totalAmount.required(),
		grandTotal: totalAmount.required(),
		currency: Joi.string().length(3).uppercase().required()
	}).allow(null),
	paymentMethod: Joi.string().valid("card", "blik", "paypal").allow(null)
};

const amountOf = (v: number | { amount: number }) => (typeof v === "number" ? v : v.amount);

const statusSchema = Joi.string().valid(...ORDER_STATUSES);
/** An order in one of these no longer needs its customer's data (erasure waits for the others). */
const FINISHED: readonly OrderStatus[] = ["shipped", "delivered", "cancelled", "payment_failed"];
const OPEN_STATUSES = ORDER_STATUSES.filter(s => !FINISHED.includes(s));

interface MoveOpts {
	reason?: string | null;
	code?: string | null;
	patch?: Record<string, unknown>;
}

interface Methods {
	keyOf(ctx: Ctx, action: string): string | undefined;
	adminOnly(ctx: Ctx): void;
	lockOrderId(trx: Trx, orderId: string): Promise<void>;
	load(id: string, trx?: Trx, forUpdate?: boolean): Promise<OrderRow | undefined>;
	mustLoad(id: string, trx: Trx): Promise<OrderRow>;
	view(row: OrderRow, trx?: Trx): Promise<Order>;
	views(rows: OrderRow[]): Promise<Order[]>;
	move(ctx: Ctx | EventEnvelope, trx: Trx, row: OrderRow, to: OrderStatus, opts?: MoveOpts): Promise<OrderRow>;
	refuse(row: OrderRow, to: OrderStatus): never;
	paymentsOf(ctx: Ctx, orderIds: string[], strict?: boolean): Promise<Record<string, OrderPayment>>;
	withPayments(ctx: Ctx, orders: Order[]): Promise<Order[]>;
	ensureVisible(ctx: Ctx, row: OrderRow | undefined, id: string): OrderRow;
	recordCancelled(ctx: Ctx, trx: Trx, row: OrderRow, reason: string, code: string | null, refundAmount: { amount: number; currency: string } | null): Promise<Order>;
}

type This = ServiceThis<Methods>;

/** What the reconciler needs to know of an order. */
function staleView(r: OrderRow) {
	return { orderId: r.id, sagaId: r.saga_id, cartId: r.cart_id, customerId: r.customer_id, status: r.status, createdAt: new Date(r.created_at).toISOString() };
}

export default defineService<Methods>({
	name: "orders",
	mixins: [DbMixin("orders"), OutboxMixin()],

	actions: {
		/** Step `createOrder` of place-order: a pending order with a snapshot of its lines. Idempotent by orderId. */
		create: {
			params: Joi.object({
				orderId: uuid.required(),
				customerId: uuid.required(),
				customerEmail: Joi.string().email().max(320).allow(null),
				cartId: uuid.allow(null),
				sagaId: uuid.allow(null),
				lines: Joi.array().items(lineSchema).min(1).max(100).required(),
				...snapshotSchema,
				idempotencyKey
			}),
			async handler(ctx) {
				const p = ctx.params;
				const priced = priceLines(p.lines);
				if (!priced.ok) throw validationError(priced.message, [{ field: "lines", message: priced.message, type: "currency.mismatch" }]);
				if (p.totals && p.totals.currency !== priced.total.currency) {
					const message = `The totals are in ${p.totals.currency}, the lines in ${priced.total.currency}`;
					throw validationError(message, [{ field: "totals.currency", message, type: "currency.mismatch" }]);
				}
				const snapshot: OrderSnapshot = {
					shippingAddress: p.shippingAddress ?? null,
					shippingMethod: p.shippingMethod ?? null,
					deliveryDate: p.deliveryDate ?? null,
					express: p.express ?? false,
					addons: p.addons ?? [],
					promotions: p.promotions ?? [],
					totals: p.totals
						? {
								cartTotal: amountOf(p.totals.cartTotal), promotionDiscount: amountOf(p.totals.promotionDiscount), shippingTotal: amountOf(p.totals.shippingTotal),
								servicesTotal: amountOf(p.totals.servicesTotal), grandTotal: amountOf(p.totals.grandTotal), currency: p.totals.currency
							}
						: null,
					paymentMethod: p.paymentMethod ?? null
				};
				// The order's total is what the customer pays: the checkout's grand total when there is one.
				const total = snapshot.totals ? { amount: snapshot.totals.grandTotal, currency: snapshot.totals.currency } : priced.total;
				return this.idempotent(this.keyOf(ctx, "orders.create"), "orders.create", async trx => {
					await this.lockOrderId(trx, p.orderId);
					const existing = await this.load(p.orderId, trx);
					if (existing) {
						if (existing.customer_id !== p.customerId) throw conflict("IDEMPOTENCY_KEY_REUSED", "This order id belongs to another order", { orderId: p.orderId });
						return this.view(existing, trx);
					}
					const abandoned = await this.table("abandoned_orders", trx).where({ order_id: p.orderId }).first();
					if (abandoned) throw conflict("INVALID_TRANSITION", "This checkout was abandoned before its order was created", { orderId: p.orderId, reason: abandoned.reason });

					const seq = await trx.raw(`SELECT nextval(?::regclass) AS n`, [`"${this.schemaName}".order_number_seq`]);
					const orderNumber = formatOrderNumber(new Date().getUTCFullYear(), Number((seq.rows ?? seq)[0].n));
					const inserted = await this.table("orders", trx)
						.insert({
							id: p.orderId, order_number: orderNumber, customer_id: p.customerId, customer_email: p.customerEmail ?? null,
							cart_id: p.cartId ?? null, saga_id: p.sagaId ?? null, status: "pending",
							currency: total.currency, total_amount: total.amount, snapshot: JSON.stringify(snapshot), payment_method: snapshot.paymentMethod ?? null
						})
						.onConflict("id")
						.ignore()
						.returning("*");
					if (inserted.length === 0) return this.view((await this.load(p.orderId, trx))!, trx); // created at the same moment by a duplicate request
					const lines: LineRow[] = await this.table("order_lines", trx)
						.insert(
							priced.lines.map((l, i) => ({
								order_id: p.orderId, position: i, product_id: l.productId, sku: l.sku, name: l.name, quantity: l.quantity,
								unit_amount: l.unitPrice.amount, line_amount: l.lineTotal.amount, currency: l.unitPrice.currency
							}))
						)
						.returning("*");
					const history: HistoryRow[] = await this.table("order_status_history", trx).insert({ order_id: p.orderId, from_status: null, status: "pending" }).returning("*");
					// The order as written, without reading it back.
					const order = toOrder(inserted[0], lines, history);
					const itemCount = order.lines.reduce((n, l) => n + l.quantity, 0);
					// The address stays out of events: it is personal data the order alone keeps.
					await this.record(trx, "order.placed", order.id, {
						orderId: order.id, orderNumber: order.orderNumber, customerId: order.customerId, customerEmail: order.customerEmail,
						cartId: order.cartId, lines: order.lines, total: order.total, itemCount, status: order.status, createdAt: order.createdAt,
						shippingMethod: order.shippingMethod, deliveryDate: order.deliveryDate, express: order.express, addons: order.addons,
						promotions: order.promotions, totals: order.totals, paymentMethod: order.paymentMethod
					}, ctx);
					await this.recordIntegration(trx, "OrderPlacedNotification", order.id, {
						orderId: order.id, orderNumber: order.orderNumber, customerId: order.customerId, totalAmount: order.total, itemCount
					}, ctx);
					return order;
				});
			}
		},

		/** Step `confirmOrder` of place-order, or an admin: pending / awaiting_payment → confirmed. */
		confirm: {
			rest: "POST /api/orders/:id/confirm",
			params: Joi.object({ orderId: uuid.required(), paymentId: uuid.allow(null), idempotencyKey }),
			async handler(ctx) {
				const { orderId, paymentId } = ctx.params;
				return this.idempotent(this.keyOf(ctx, "orders.confirm"), "orders.confirm", async trx => {
					const row = await this.mustLoad(orderId, trx);
					const d = decide(row.status, "confirmed");
					if (d === "refuse") this.refuse(row, "confirmed");
					if (d === "noop") {
						if (paymentId && row.payment_id && paymentId !== row.payment_id) {
							throw conflict("INVALID_TRANSITION", "This order was confirmed with another payment", { orderId, paymentId: row.payment_id });
						}
						return this.view(row, trx);
					}
					const moved = await this.move(ctx, trx, row, "confirmed", { patch: { payment_id: paymentId ?? row.payment_id } });
					await this.record(trx, "order.confirmed", orderId, {
						orderId, orderNumber: moved.order_number, customerId: moved.customer_id, customerEmail: moved.customer_email, paymentId: moved.payment_id,
						total: { amount: Number(moved.total_amount), currency: moved.currency },
						confirmedAt: new Date(moved.updated_at).toISOString(), confirmedBy: ctx.meta.user?.id ?? null
					}, ctx);
					return this.view(moved, trx);
				});
			}
		},

		/** pending → awaiting_payment: the payment is decided by the provider later (BLIK, PayPal). */
		markAwaitingPayment: {
			params: Joi.object({ orderId: uuid.required(), idempotencyKey }),
			async handler(ctx) {
				return this.idempotent(this.keyOf(ctx, "orders.markAwaitingPayment"), "orders.markAwaitingPayment", async trx => {
					const row = await this.mustLoad(ctx.params.orderId, trx);
					const d = decide(row.status, "awaiting_payment");
					if (d === "refuse") this.refuse(row, "awaiting_payment");
					return this.view(d === "noop" ? row : await this.move(ctx, trx, row, "awaiting_payment"), trx);
				});
			}
		},

		/**
		 * The compensation of `createOrder`: ends an order that was never confirmed —
		 * `payment_failed` for a payment refusal, else `cancelled`. An unknown order (it may never
		 * have been created) answers null; an order already ended is answered as it is.
		 */
		fail: {
			params: Joi.object({ orderId: uuid.required(), reason: Joi.string().min(1).max(1000).required(), code: Joi.string().max(100).allow(null), idempotencyKey }),
			async handler(ctx) {
				const { orderId, reason, code } = ctx.params;
				return this.idempotent(this.keyOf(ctx, "orders.fail"), "orders.fail", async trx => {
					await this.lockOrderId(trx, orderId);
					const row = await this.load(orderId, trx, true);
					if (!row) {
						await this.table("abandoned_orders", trx).insert({ order_id: orderId, reason, code: code ?? null }).onConflict("order_id").ignore();
						return null;
					}
					const { decision, to } = decideFailure(row.status, code);
					if (decision === "refuse") this.refuse(row, to);
					if (decision === "noop") return this.view(row, trx);
					if (to === "cancelled") return this.recordCancelled(ctx, trx, row, reason, code ?? null, null);
					return this.view(await this.move(ctx, trx, row, to, { reason, code }), trx);
				});
			}
		},

		/**
		 * Admin: confirmed → shipped, with its tracking number and carrier. The reserved stock is
		 * deducted and the authorized payment captured first — each once per order (fixed keys),
		 * so a ship that failed half-way is simply sent again.
		 */
		ship: {
			rest: "POST /api/orders/:id/ship",
			params: Joi.object({
				orderId: uuid.required(),
				trackingNumber: Joi.string().trim().min(1).max(100).required(),
				carrier: Joi.string().trim().min(1).max(50).required(),
				idempotencyKey
			}),
			async handler(ctx) {
				this.adminOnly(ctx);
				const { orderId, trackingNumber, carrier } = ctx.params;
				const key = this.keyOf(ctx, "orders.ship");
				const current = await this.load(orderId);
				if (!current) throw notFound("Order", orderId);
				if (decide(current.status, "shipped") === "apply") {
					const payment = (await this.paymentsOf(ctx, [orderId], true))[orderId];
					if (payment && payment.status !== "authorized" && payment.status !== "captured") {
						throw conflict("INVALID_TRANSITION", `The order's payment is ${payment.status}; it cannot be captured, so the order cannot ship`, { orderId, payment: payment.status });
					}
					await ctx.call("inventory.deduct", { orderId, idempotencyKey: `${orderId}:ship:deductStock` });
					if (payment?.status === "authorized") await ctx.call("payments.capture", { orderId, idempotencyKey: `${orderId}:ship:capturePayment` });
				}
				const order = await this.idempotent(key, "orders.ship", async trx => {
					const row = await this.mustLoad(orderId, trx);
					const d = decide(row.status, "shipped");
					if (d === "refuse") this.refuse(row, "shipped");
					if (d === "noop") {
						if (row.tracking_number !== trackingNumber || row.carrier !== carrier) {
							throw conflict("INVALID_TRANSITION", "This order was already shipped with another tracking number", { orderId, trackingNumber: row.tracking_number });
						}
						return this.view(row, trx);
					}
					const moved = await this.move(ctx, trx, row, "shipped", { patch: { tracking_number: trackingNumber, carrier, shipped_at: this.knex.fn.now() } });
					const shippedAt = new Date(moved.shipped_at!).toISOString();
					await this.record(trx, "order.shipped", orderId, {
						orderId, orderNumber: moved.order_number, customerId: moved.customer_id, customerEmail: moved.customer_email, trackingNumber, carrier, shippedAt
					}, ctx);
					await this.recordIntegration(trx, "OrderShippedNotification", orderId, {
						orderId, orderNumber: moved.order_number, customerId: moved.customer_id, trackingNumber, carrier
					}, ctx);
					return this.view(moved, trx);
				});
				return (await this.withPayments(ctx, [order]))[0];
			}
		},

		/**
		 * The owner or an admin cancels an order before it ships: checked here (404 for someone
		 * else's order, 409 once shipped or ended), then the cancel-order saga does the work —
		 * stock released, payment voided or refunded, promotion use given back — and ends with
		 * `orders.markCancelled`. Answers 202 with the order as it is now.
		 */
		cancel: {
			rest: "POST /api/orders/:id/cancel",
			params: Joi.object({ orderId: uuid.required(), reason: Joi.string().trim().min(1).max(1000).required(), idempotencyKey }),
			async handler(ctx) {
				const { orderId, reason } = ctx.params;
				const row = this.ensureVisible(ctx, await this.load(orderId), orderId);
				if (row.status === "shipped" || row.status === "delivered") {
					throw conflict("INVALID_TRANSITION", `This order was already ${row.status}; it can no longer be cancelled (ask for a return instead)`, { orderId, status: row.status });
				}
				if (decide(row.status, "cancelled") === "refuse") this.refuse(row, "cancelled");
				// One cancel-order saga per order, however often it is asked.
				const cancellation = await ctx.call("checkout.cancelOrder", {
					orderId, reason, requestedBy: ctx.meta.user?.id ?? "system", idempotencyKey: `${orderId}:cancel`
				});
				const order = (await this.withPayments(ctx, [await this.view((await this.load(orderId))!)]))[0]!;
				return { ...order, cancellationRequest: cancellation ?? null };
			}
		},

		/** The cancel-order saga's last step: pending / awaiting_payment / confirmed → cancelled, `order.cancelled`. */
		markCancelled: {
			params: Joi.object({
				orderId: uuid.required(),
				reason: Joi.string().min(1).max(1000).required(),
				refundAmount: moneySchema.allow(null),
				code: Joi.string().max(100).allow(null),
				idempotencyKey
			}),
			async handler(ctx) {
				const { orderId, reason, refundAmount, code } = ctx.params;
				return this.idempotent(this.keyOf(ctx, "orders.markCancelled"), "orders.markCancelled", async trx => {
					const row = await this.mustLoad(orderId, trx);
					const d = decide(row.status, "cancelled");
					if (d === "refuse") this.refuse(row, "cancelled");
					if (d === "noop") return this.view(row, trx);
					return this.recordCancelled(ctx, trx, row, reason, code ?? "CANCELLED", refundAmount ?? null);
				});
			}
		},

		/** Admin: gives back captured money of an order, all of it (no amount) or part; never more than captured. */
		refund: {
			rest: "POST /api/orders/:id/refund",
			params: Joi.object({
				orderId: uuid.required(),
				amount: Joi.object({ amount: Joi.number().integer().min(1).max(100_000_000_00).required(), currency: Joi.string().length(3).uppercase().required() }),
				reason: Joi.string().trim().min(1).max(1000).required(),
				idempotencyKey
			}),
			async handler(ctx) {
				this.adminOnly(ctx);
				const { orderId, amount, reason } = ctx.params;
				const row = await this.load(orderId);
				if (!row) throw notFound("Order", orderId);
				const payment = await ctx.call<any, any>("payments.refund", { orderId, amount, reason, idempotencyKey: this.keyOf(ctx, "orders.refund") });
				const order = (await this.withPayments(ctx, [await this.view(row)]))[0]!;
				return { ...order, refunds: payment?.refunds ?? [] };
			}
		},

		/** Admin: shipped → delivered. */
		deliver: {
			rest: "POST /api/orders/:id/deliver",
			params: Joi.object({ orderId: uuid.required(), idempotencyKey }),
			async handler(ctx) {
				this.adminOnly(ctx);
				const { orderId } = ctx.params;
				return this.idempotent(this.keyOf(ctx, "orders.deliver"), "orders.deliver", async trx => {
					const row = await this.mustLoad(orderId, trx);
					const d = decide(row.status, "delivered");
					if (d === "refuse") this.refuse(row, "delivered");
					if (d === "noop") return this.view(row, trx);
					const moved = await this.move(ctx, trx, row, "delivered", { patch: { delivered_at: this.knex.fn.now() } });
					await this.record(trx, "order.delivered", orderId, {
						orderId, orderNumber: moved.order_number, customerId: moved.customer_id, customerEmail: moved.customer_email,
						deliveredAt: new Date(moved.delivered_at!).toISOString()
					}, ctx);
					return this.view(moved, trx);
				});
			}
		},

		/** One order; a customer sees only their own (another's answers 404). */
		get: {
			rest: "GET /api/orders/:id",
			params: Joi.object({ id: uuid.required() }),
			async handler(ctx) {
				const row = this.ensureVisible(ctx, await this.load(ctx.params.id), ctx.params.id);
				return (await this.withPayments(ctx, [await this.view(row)]))[0];
			}
		},

		/**
		 * Orders newest first: a customer's own; an admin's (or an internal caller's) all,
		 * optionally of one customer; by status and by when they were placed (`from` ≤ createdAt < `to`).
		 */
		list: {
			rest: "GET /api/orders",
			params: Joi.object({
				page,
				pageSize,
				status: Joi.alternatives(statusSchema, Joi.array().items(statusSchema).min(1).max(ORDER_STATUSES.length)),
				customerId: uuid,
				from: Joi.date().iso(),
				to: Joi.date().iso().when("from", { is: Joi.exist(), then: Joi.date().greater(Joi.ref("from")) }).messages({ "date.greater": "'to' must be after 'from'" })
			}),
			async handler(ctx) {
				const { page, pageSize, status, from, to } = ctx.params;
				const user = ctx.meta.user;
				const customerId: string | undefined = user && user.role !== "admin" ? user.id : ctx.params.customerId;
				const filter = (q: Knex.QueryBuilder) => {
					if (customerId) q.where({ customer_id: customerId });
					if (status) q.whereIn("status", Array.isArray(status) ? status : [status]);
					if (from) q.where("created_at", ">=", from);
					if (to) q.where("created_at", "<", to);
					return q;
				};
				const [{ n }] = await filter(this.table("orders")).count<{ n: string }[]>("* as n");
				const rows: OrderRow[] = await filter(this.table("orders"))
					.orderBy([{ column: "created_at", order: "desc" }, { column: "order_number", order: "desc" }])
					.limit(pageSize)
					.offset((page - 1) * pageSize);
				return { rows: await this.withPayments(ctx, await this.views(rows)), total: Number(n), page, pageSize };
			}
		},

		/**
		 * Internal (checkout's reconciler): orders still before the pivot (pending, awaiting_payment)
		 * that were placed more than `olderThanMs` ago, oldest first — with the saga that placed them.
		 */
		listStale: {
			params: Joi.object({ olderThanMs: Joi.number().integer().min(0).required(), limit: Joi.number().integer().min(1).max(1000).default(200) }),
			async handler(ctx) {
				const rows: OrderRow[] = await this.table("orders")
					.whereIn("status", ["pending", "awaiting_payment"])
					.where("created_at", "<", new Date(Date.now() - ctx.params.olderThanMs))
					.orderBy("created_at")
					.limit(ctx.params.limit);
				return rows.map(staleView);
			}
		},

		/** Internal (checkout's reconciler): the orders the given sagas placed, whatever their status. */
		ofSagas: {
			params: Joi.object({ sagaIds: Joi.array().items(uuid).min(1).max(1000).required() }),
			async handler(ctx) {
				const rows: OrderRow[] = await this.table("orders").whereIn("saga_id", ctx.params.sagaIds);
				return rows.map(staleView);
			}
		},

		/** Operators: the id of the order with this number (`ORD-2026-000042`); 404 when there is none. */
		idOfNumber: {
			visibility: "public",
			params: Joi.object({ orderNumber: Joi.string().max(40).required() }),
			async handler(ctx) {
				const row = await this.table("orders").where({ order_number: ctx.params.orderNumber.trim().toUpperCase() }).first("id");
				if (!row) throw notFound("Order", ctx.params.orderNumber);
				return { orderId: row.id as string };
			}
		},

		/** Internal (customers' erasure): how many of a customer's orders are still under way. A customer may ask only about themselves. */
		countOpen: {
			params: Joi.object({ customerId: uuid.required() }),
			async handler(ctx) {
				const { customerId } = ctx.params;
				const user = ctx.meta.user;
				if (user && user.role !== "admin" && user.id !== customerId) throw notFound("Customer", customerId);
				const [{ n }] = await this.table("orders").where({ customer_id: customerId }).whereIn("status", OPEN_STATUSES).count<{ n: string }[]>("* as n");
				return { customerId, count: Number(n), statuses: OPEN_STATUSES };
			}
		}
	},

	channels: {
		/** GDPR erasure: the customer's orders stay (bookkeeping) but lose the personal data they held. */
		"customer.erased": {
			async handler(env) {
				const customerId = env.payload?.customerId;
				await this.handleOnce(env, "orders.customer.erased", async trx => {
					if (typeof customerId !== "string" || !UUID_RE.test(customerId)) {
						this.logger.warn(`customer.erased ${env.event_id} carries no customer id; nothing to anonymize`);
						return;
					}
					const mine = this.table("orders", trx).select(this.knex.raw("id::text")).where({ customer_id: customerId });
					await this.table("orders", trx)
						.where({ customer_id: customerId })
						.whereNull("anonymized_at")
						.update({
							customer_email: null,
							snapshot: this.knex.raw(`CASE WHEN snapshot IS NULL THEN NULL ELSE jsonb_set(snapshot, '{shippingAddress}', 'null'::jsonb) END`),
							anonymized_at: this.knex.fn.now()
						});
					// The stored answers of earlier requests (create, confirm …) repeat the email and the address.
					await this.forgetAnswers(trx, ["customerId"], customerId);
					// The events kept in the outbox carried the email too.
					await this.redactOutbox(trx, { aggregateIds: mine }, { set: { customerEmail: null } });
				});
			}
		}
	},

	methods: {
		/** The caller's key, or the gateway's Idempotency-Key header scoped to this action and user. */
		keyOf(ctx: Ctx, action: string): string | undefined {
			if (ctx.params.idempotencyKey) return ctx.params.idempotencyKey;
			const header = ctx.meta.idempotencyKey;
			if (typeof header !== "string" || !header) return undefined;
			return "http:" + createHash("sha256").update(`${action}\n${ctx.meta.user?.id ?? ""}\n${header}`).digest("hex");
		},

		adminOnly(ctx: Ctx) {
			if (ctx.meta.user && ctx.meta.user.role !== "admin") throw forbidden("This needs the admin role");
		},

		/** Serializes a create and a fail of one order id (the row may not exist yet, so no row lock). */
		async lockOrderId(trx: Trx, orderId: string) {
			await trx.raw(`SELECT pg_advisory_xact_lock(hashtextextended(?, 0))`, [`orders:${orderId}`]);
		},

		async load(this: This, id: string, trx?: Trx, forUpdate = false) {
			const q = this.table("orders", trx).where({ id });
			if (forUpdate && trx) q.forUpdate();
			return q.first();
		},

		async mustLoad(this: This, id: string, trx: Trx) {
			const row = await this.load(id, trx, true);
			if (!row) throw notFound("Order", id);
			return row;
		},

		/** An order the caller may see: a customer only their own (someone else's answers 404, as an unknown one). */
		ensureVisible(ctx: Ctx, row: OrderRow | undefined, id: string): OrderRow {
			const user = ctx.meta.user;
			if (!row || (user && user.role !== "admin" && row.customer_id !== user.id)) throw notFound("Order", id);
			return row;
		},

		/**
		 * The orders' payments as payments tells them. For reading, payments being away shows an
		 * order without its payment; `strict` (before shipping) makes it a temporary failure.
		 */
		async paymentsOf(this: This, ctx: Ctx, orderIds: string[], strict = false) {
			try {
				return await ctx.call<Record<string, OrderPayment>, { orderIds: string[] }>("payments.ofOrders", { orderIds }, { timeout: 5000 });
			} catch (err: any) {
				if (strict) throw temporary(`The payments service did not answer: ${err.message}`);
				this.logger.warn(`Orders shown without their payment: payments did not answer (${err.message})`);
				return {};
			}
		},

		async withPayments(this: This, ctx: Ctx, orders: Order[]) {
			if (orders.length === 0) return orders;
			const payments = await this.paymentsOf(ctx, orders.map(o => o.id));
			return orders.map(o => {
				const p = payments[o.id];
				return p ? { ...o, payment: { paymentId: p.paymentId, method: p.method, status: p.status, transactionId: p.transactionId, amount: p.amount, captured: p.captured, refunded: p.refunded } } : o;
			});
		},

		/** Moves an order to cancelled with its reason and refund, and tells the shop and outside systems. */
		async recordCancelled(this: This, ctx: Ctx, trx: Trx, row: OrderRow, reason: string, code: string | null, refundAmount: { amount: number; currency: string } | null) {
			const moved = await this.move(ctx, trx, row, "cancelled", {
				reason, code, patch: { cancel_reason: reason, refund_amount: refundAmount?.amount ?? null, cancelled_at: this.knex.fn.now() }
			});
			const order = await this.view(moved, trx);
			await this.record(trx, "order.cancelled", order.id, {
				orderId: order.id, orderNumber: order.orderNumber, customerId: order.customerId, reason, code, refundAmount,
				lines: order.lines, total: order.total, cancelledAt: order.updatedAt
			}, ctx);
			await this.recordIntegration(trx, "OrderCancelledNotification", order.id, {
				orderId: order.id, orderNumber: order.orderNumber, customerId: order.customerId, reason, refundAmount
			}, ctx);
			return order;
		},

		refuse(row: OrderRow, to: OrderStatus): never {
			throw conflict("INVALID_TRANSITION", `An order that is ${row.status} cannot become ${to}`, { orderId: row.id, status: row.status, to });
		},

		async move(this: This, cause: Ctx | EventEnvelope, trx: Trx, row: OrderRow, to: OrderStatus, opts: MoveOpts = {}) {
			const [moved] = await this.table("orders", trx)
				.where({ id: row.id, status: row.status })
				.update({ ...opts.patch, status: to, updated_at: this.knex.fn.now() })
				.returning("*");
			if (!moved) throw conflict("INVALID_TRANSITION", "The order changed meanwhile; try again", { orderId: row.id });
			const by = (cause as Ctx).meta?.user?.id;
			await this.table("order_status_history", trx).insert({
				order_id: row.id, from_status: row.status, status: to, reason: opts.reason ?? null, code: opts.code ?? null, changed_by: by ?? null
			});
			await this.record(trx, "order.status_changed", row.id, {
				orderId: row.id, orderNumber: row.order_number, customerId: row.customer_id, from: row.status, to,
				reason: opts.reason ?? null, at: new Date(moved.updated_at).toISOString()
			}, cause);
			return moved;
		},

		async view(this: This, row: OrderRow, trx?: Trx) {
			const lines: LineRow[] = await this.table("order_lines", trx).where({ order_id: row.id });
			const history: HistoryRow[] = await this.table("order_status_history", trx).where({ order_id: row.id }).orderBy("id");
			return toOrder(row, lines, history);
		},

		async views(this: This, rows: OrderRow[]) {
			if (rows.length === 0) return [];
			const ids = rows.map(r => r.id);
			const [lines, history]: [LineRow[], HistoryRow[]] = await Promise.all([
				this.table("order_lines").whereIn("order_id", ids),
				this.table("order_status_history").whereIn("order_id", ids).orderBy("id")
			]);
			return rows.map(r => toOrder(r, lines.filter(l => l.order_id === r.id), history.filter(h => h.order_id === r.id)));
		}
	}
});
