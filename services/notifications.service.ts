/**
 * notifications — emails and SMS sent because something happened, and the delivery log.
 *
 * Each consumed event is handled once (inbox). The message is rendered from its handlebars
 * template (`notifications/templates.ts`: subject, plain text, HTML), sent through nodemailer
 * (`notifications/mailer.ts`) or the SMS provider adapter (`notifications/sms.ts`), each of
 * which retries a failure with backoff; the delivery — sent, or failed after the last attempt —
 * is written to the log with its `notification.sent` / `notification.failed` event.
 *
 * Messages from events: verification, order placed (lines and totals), order confirmed, payment
 * failed, order shipped (tracking), order cancelled, refund processed, cart expired, and low /
 * out of stock alerts to the product's vendor (email, and SMS when out of stock and the vendor
 * has a phone) and to the admins (ALERT_EMAILS, else ADMIN_EMAIL). Events that carry no address
 * are addressed from what notifications keeps: customers' emails from customer.registered, each
 * order's customer from order.placed.
 *
 * Why the email is sent inside the handler's transaction (after the inbox row is written, before
 * the commit) rather than after the commit: the log row, the inbox row and the event commit
 * together, so every logged email was really attempted and a redelivered event (another replica,
 * a retry) waits on the inbox row and is then skipped — no second email. The one gap is a commit
 * that fails after the mail server took the message: the event comes back and the email goes out
 * a second time, logged once. Sending after the commit would close that gap by opening a worse
 * one: a crash between commit and send loses the email while the inbox says it was handled. For a
 * verification link or an order confirmation, one extra email in a rare failure is the better
 * mistake. The mailer's timeouts are short so a transaction is never held for long.
 */
import Joi from "joi";
import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { forbidden } from "../contracts/errors";
import { page, pageSize } from "../contracts/paging";
import type { EventEnvelope } from "../contracts/events";
import { DbMixin, type Trx } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { defineService, ServiceThis } from "../infra/service";
import { readSettings, settings } from "../infra/settings";
import { createMailer, Mailer } from "./notifications/mailer";
import { createSmsSender, SmsSender } from "./notifications/sms";
import { render, TemplateName, verificationData } from "./notifications/templates";
import { uuid } from "../contracts/ids";

const emailAddress = Joi.string().trim().lowercase().max(320).email({ tlds: false });
const money = Joi.object({ amount: Joi.number().integer().required(), currency: Joi.string().length(3).required() }).unknown(true);

/** What each consumed event must carry for its message; anything else in the payload is ignored. */
const PAYLOADS = {
	verificationRequested: Joi.object({
		customerId: uuid.required(),
		email: emailAddress.required(),
		firstName: Joi.string().allow("", null),
		token: Joi.string().min(1).max(200).required(),
		expiresAt: Joi.string().isoDate().allow(null)
	}).unknown(true),
	orderConfirmed: Joi.object({
		orderId: uuid.required(),
		orderNumber: Joi.string().min(1).max(40).required(),
		customerId: uuid.allow(null),
		customerEmail: emailAddress.allow(null, ""),
		total: money.allow(null)
	}).unknown(true)
};

interface Delivery {
	channel: "email" | "sms";
	to: string;
	template: TemplateName;
	/** What the template is rendered with. */
	vars: Record<string, unknown>;
	/** What the delivery log keeps (customerId lets an erasure find it). */
	data: Record<string, unknown>;
}

interface OrderRecipient {
	order_id: string;
	order_number: string;
	customer_id: string | null;
	email: string | null;
}

/** Redelivered until the recipient is known (the order's own event may still be on its way). */
class RecipientNotYetKnown extends Error {}

interface NotificationRow {
	id: string;
	channel: "email" | "sms";
	to: string;
	template: string;
	subject: string;
	text: string;
	html: string | null;
	attempts: number;
	status: "sent" | "failed";
	error: string | null;
	data: Record<string, unknown> | string;
	event_id: string | null;
	created_at: Date | string;
}

interface Methods {
	payloadOf<T>(env: EventEnvelope, schema: Joi.ObjectSchema): T | null;
	deliver(trx: Trx, cause: EventEnvelope, d: Delivery): Promise<void>;
	notify(env: EventEnvelope, handler: string, deliveries: Delivery[]): Promise<void>;
	orderOf(env: EventEnvelope): Promise<OrderRecipient | null>;
	stockAlert(env: EventEnvelope, template: "low_stock" | "out_of_stock"): Promise<void>;
	adminEmails(): string[];
}

interface Vars {
	mailer: Mailer;
	sms: SmsSender;
}

type This = ServiceThis<Methods, Vars>;

export default defineService<Methods, Vars>({
	name: "notifications",
	mixins: [DbMixin("notifications"), OutboxMixin()],

	actions: {
		/** The delivery log, newest first (admins and internal callers only: it holds verification tokens). */
		list: {
			rest: "GET /api/admin/notifications",
			params: Joi.object({
				to: Joi.string().trim().max(320),
				template: Joi.string().trim().max(100),
				page,
				pageSize
			}),
			async handler(ctx) {
				if (ctx.meta.user && ctx.meta.user.role !== "admin") throw forbidden("The delivery log is for admins");
				const { to, template, page, pageSize } = ctx.params;
				const filter = (q: Knex.QueryBuilder) => {
					if (to) q.whereRaw(`lower("to") = ?`, [to.toLowerCase()]);
					if (template) q.where({ template });
					return q;
				};
				const [{ n }] = await filter(this.table("notifications")).count<{ n: string }[]>("* as n");
				const rows: NotificationRow[] = await filter(this.table("notifications"))
					.orderBy([{ column: "created_at", order: "desc" }, { column: "id", order: "desc" }])
					.limit(pageSize)
					.offset((page - 1) * pageSize);
				return {
					rows: rows.map(r => ({
						id: r.id, channel: r.channel, to: r.to, template: r.template, subject: r.subject, text: r.text, html: r.html ?? null, attempts: r.attempts,
						status: r.status, error: r.error, createdAt: new Date(r.created_at).toISOString(),
						data: typeof r.data === "string" ? JSON.parse(r.data) : r.data
					})),
					total: Number(n),
					page,
					pageSize
				};
			}
		}
	},

	channels: {
		/** GDPR erasure: the customer's deliveries keep no address, text or token, nor do their published events. */
		"customer.erased": {
			async handler(env) {
				const customerId = env?.payload?.customerId;
				if (typeof customerId !== "string") return;
				await this.handleOnce(env, "notifications.customer.erased", async trx => {
					await this.table("recipients", trx).where({ customer_id: customerId }).delete();
					await this.table("orders", trx).where({ customer_id: customerId }).update({ email: null });
					const rows = await this.table("notifications", trx)
						.whereRaw("data->>'customerId' = ?", [customerId])
						.update({ to: "erased", subject: "(erased)", text: "(erased)", data: JSON.stringify({ customerId, erased: true }) })
						.returning("id");
					const ids = rows.map((r: { id: string }) => String(r.id));
					if (ids.length === 0) return;
					await this.redactOutbox(trx, { eventNames: ["notification.sent", "notification.failed"], payloadIn: { field: "notificationId", values: ids } }, { set: { to: "erased" } });
				});
			}
		},

		/** The verification email; `data.token` is kept so an operator (and the tests) can find it. */
		"customer.verification_requested": {
			async handler(env) {
				const p = this.payloadOf<{ customerId: string; email: string; firstName?: string | null; token: string; expiresAt?: string | null }>(env, PAYLOADS.verificationRequested);
				if (!p) return;
				const verifyUrl = `${settings.storefrontUrl}/verify-email`;
				await this.notify(env, "notifications.customer.verification_requested", [{
					channel: "email", to: p.email, template: "email_verification",
					vars: verificationData({ firstName: p.firstName, token: p.token, expiresAt: p.expiresAt, verifyUrl }),
					data: { customerId: p.customerId, token: p.token }
				}]);
			}
		},

		/** The order confirmation, to the email the order carries (an order without one gets none). */
		"order.confirmed": {
			async handler(env) {
				const p = this.payloadOf<{ orderId: string; orderNumber: string; customerId?: string | null; customerEmail?: string | null; total?: { amount: number; currency: string } | null }>(env, PAYLOADS.orderConfirmed);
				if (!p) return;
				if (!p.customerEmail) {
					this.logger.debug(`order.confirmed ${env.event_id} carries no customer email; no confirmation sent`);
					return;
				}
				await this.notify(env, "notifications.order.confirmed", [{
					channel: "email", to: p.customerEmail!, template: "order_confirmed",
					vars: { orderNumber: p.orderNumber, total: p.total },
					data: { orderId: p.orderId, orderNumber: p.orderNumber, customerId: p.customerId ?? null }
				}]);
			}
		},

		// --- What notifications keeps to address messages --------------------------------------

		"customer.registered": {
			async handler(env) {
				const p = env?.payload as any;
				if (typeof p?.customerId !== "string" || emailAddress.validate(p.email).error) return;
				await this.table("recipients").insert({ customer_id: p.customerId, email: p.email, first_name: p.firstName ?? null }).onConflict("customer_id").merge();
			}
		},

		"customer.updated": {
			async handler(env) {
				const p = env?.payload as any;
				if (typeof p?.customerId !== "string") return;
				const patch: Record<string, unknown> = {};
				if (typeof p.email === "string" && !emailAddress.validate(p.email).error) patch.email = p.email;
				if (typeof p.firstName === "string") patch.first_name = p.firstName;
				if (Object.keys(patch).length > 0) await this.table("recipients").where({ customer_id: p.customerId }).update(patch);
			}
		},

		// --- Orders and payments ---------------------------------------------------------------

		/** Keeps the order's customer (later events of the order carry no address), and confirms what was ordered. */
		"order.placed": {
			async handler(env) {
				const p = env?.payload as any;
				if (typeof p?.orderId !== "string" || typeof p?.orderNumber !== "string") return;
				const email = typeof p.customerEmail === "string" && !emailAddress.validate(p.customerEmail).error ? p.customerEmail : null;
				await this.table("orders").insert({ order_id: p.orderId, order_number: p.orderNumber, customer_id: p.customerId ?? null, email }).onConflict("order_id").ignore();
				if (!email) return;
				const totals = p.totals ?? {};
				await this.notify(env, "notifications.order.placed", [{
					channel: "email", to: email, template: "order_placed",
					vars: { orderNumber: p.orderNumber, lines: Array.isArray(p.lines) ? p.lines : [], total: p.total, discount: totals.promotionDiscount?.amount ? totals.promotionDiscount : null, shipping: totals.shippingTotal ?? null },
					data: { orderId: p.orderId, orderNumber: p.orderNumber, customerId: p.customerId ?? null }
				}]);
			}
		},

		"payment.failed": {
			async handler(env) {
				const p = env?.payload as any;
				const order = await this.orderOf(env);
				if (!order?.email) return;
				await this.notify(env, "notifications.payment.failed", [{
					channel: "email", to: order.email, template: "payment_failed",
					vars: { orderNumber: order.order_number, amount: p.amount, reason: p.reason },
					data: { orderId: order.order_id, customerId: order.customer_id }
				}]);
			}
		},

		"order.shipped": {
			async handler(env) {
				const p = env?.payload as any;
				const order = await this.orderOf(env);
				const to = p?.customerEmail ?? order?.email;
				if (!to || emailAddress.validate(to).error) return;
				await this.notify(env, "notifications.order.shipped", [{
					channel: "email", to, template: "order_shipped",
					vars: { orderNumber: p.orderNumber ?? order?.order_number, trackingNumber: p.trackingNumber, carrier: p.carrier },
					data: { orderId: p.orderId, customerId: p.customerId ?? order?.customer_id ?? null, trackingNumber: p.trackingNumber }
				}]);
			}
		},

		"order.cancelled": {
			async handler(env) {
				const p = env?.payload as any;
				const order = await this.orderOf(env);
				if (!order?.email) return;
				await this.notify(env, "notifications.order.cancelled", [{
					channel: "email", to: order.email, template: "order_cancelled",
					vars: { orderNumber: order.order_number, reason: p.reason, refundAmount: p.refundAmount?.amount ? p.refundAmount : null },
					data: { orderId: order.order_id, customerId: order.customer_id }
				}]);
			}
		},

		"payment.refunded": {
			async handler(env) {
				const p = env?.payload as any;
				const order = await this.orderOf(env);
				if (!order?.email) return;
				await this.notify(env, "notifications.payment.refunded", [{
					channel: "email", to: order.email, template: "refund_processed",
					vars: { orderNumber: order.order_number, refundAmount: p.refundAmount, reason: p.reason },
					data: { orderId: order.order_id, customerId: order.customer_id, refundId: p.refundId ?? null }
				}]);
			}
		},

		// --- Carts and stock -------------------------------------------------------------------

		"cart.expired": {
			async handler(env) {
				const p = env?.payload as any;
				if (typeof p?.customerId !== "string") return; // a guest's cart: nobody to tell
				const who = await this.table("recipients").where({ customer_id: p.customerId }).first();
				if (!who) return;
				const itemCount = Array.isArray(p.items) ? p.items.reduce((n: number, i: any) => n + (Number(i.quantity) || 0), 0) : 0;
				await this.notify(env, "notifications.cart.expired", [{
					channel: "email", to: who.email, template: "cart_expired",
					vars: { firstName: who.first_name, lastActivityDate: p.lastActivityDate, itemCount },
					data: { cartId: p.cartId, customerId: p.customerId }
				}]);
			}
		},

		"inventory.low_stock": {
			async handler(env) {
				await this.stockAlert(env, "low_stock");
			}
		},

		"inventory.out_of_stock": {
			async handler(env) {
				await this.stockAlert(env, "out_of_stock");
			}
		}
	},

	methods: {
		/** The payload when it has what the message needs; else a warning and null (the event is acknowledged). */
		payloadOf<T>(this: This, env: EventEnvelope, schema: Joi.ObjectSchema): T | null {
			const { error, value } = schema.validate(env?.payload ?? {}, { abortEarly: false, convert: true });
			if (error) {
				this.logger.warn(`${env?.event_name} ${env?.event_id} cannot be notified: ${error.details.map(d => d.path.join(".")).join(", ")} missing or invalid`);
				return null;
			}
			return value as T;
		},

		/** Every delivery of one event, once (inbox): a redelivered event sends nothing again. */
		async notify(this: This, env: EventEnvelope, handler: string, deliveries: Delivery[]) {
			await this.handleOnce(env, handler, async trx => {
				for (const d of deliveries) await this.deliver(trx, env, d);
			});
		},

		/** The order an event is about, as order.placed told it; unknown yet → the event comes back later. */
		async orderOf(this: This, env: EventEnvelope): Promise<OrderRecipient | null> {
			const orderId = (env?.payload as any)?.orderId;
			if (typeof orderId !== "string") return null;
			const row = await this.table("orders").where({ order_id: orderId }).first();
			if (row) return row;
			// An order this shop never placed (or placed before notifications kept orders) is not waited for forever.
			if (Date.now() - new Date(env.occurred_at).getTime() > 60_000) return null;
			throw new RecipientNotYetKnown(`order ${orderId} is not known yet; ${env.event_name} will be handled when it is`);
		},

		adminEmails(this: This): string[] {
			return [...new Set(readSettings().alertEmails.filter(e => !emailAddress.validate(e).error))];
		},

		/** A stock alert to the product's vendor (email; SMS too when out of stock) and to every admin address. */
		async stockAlert(this: This, env: EventEnvelope, template: "low_stock" | "out_of_stock") {
			const p = env?.payload as any;
			if (typeof p?.productId !== "string" || typeof p?.sku !== "string") return;
			const [product] = await this.broker.call<any[], any>("catalog.getMany", { ids: [p.productId], withVendors: true }, { timeout: 5000 });
			const vars = { productName: product?.name ?? p.sku, sku: p.sku, currentStock: p.currentStock ?? p.available ?? 0, threshold: p.threshold ?? p.lowStockThreshold };
			const data = { productId: p.productId, sku: p.sku, vendorId: product?.vendor?.id ?? null };
			const to = new Set<string>();
			const deliveries: Delivery[] = [];
			const email = (address: string) => {
				if (to.has(address)) return;
				to.add(address);
				deliveries.push({ channel: "email", to: address, template, vars, data });
			};
			if (product?.vendor?.email) email(product.vendor.email);
			for (const admin of this.adminEmails()) email(admin);
			if (template === "out_of_stock" && product?.vendor?.phone) deliveries.push({ channel: "sms", to: product.vendor.phone, template, vars, data });
			await this.notify(env, `notifications.${env.event_name}`, deliveries);
		},

		/**
		 * Sends (see the header for why inside the transaction; the sender retries with backoff),
		 * then logs the outcome and records notification.sent or notification.failed.
		 */
		async deliver(this: This, trx: Trx, cause: EventEnvelope, d: Delivery) {
			const id = randomUUID();
			const message = render(d.template, d.vars);
			let error: string | null = null;
			let attempts = 1;
			try {
				const sent = d.channel === "sms" ? await this.sms.send({ to: d.to, text: message.text }) : await this.mailer.send({ to: d.to, subject: message.subject, text: message.text, html: message.html });
				attempts = sent.attempts;
			} catch (err: any) {
				attempts = Number(err?.attempts) || 1;
				error = String(err?.message ?? err).slice(0, 1000) || "unknown error";
				this.logger.warn(`${d.channel} ${d.template} to ${d.to} failed: ${error}`);
			}
			const status = error ? "failed" : "sent";
			await this.table("notifications", trx).insert({
				id, channel: d.channel, to: d.to, template: d.template, subject: d.channel === "sms" ? "(SMS)" : message.subject, text: message.text,
				html: d.channel === "sms" ? null : message.html, status, error, attempts, data: JSON.stringify(d.data), event_id: cause.event_id
			});
			await this.record(trx, error ? "notification.failed" : "notification.sent", id, {
				notificationId: id, channel: d.channel, to: d.to, template: d.template, ...(error ? { error, attempts } : {})
			}, cause);
		}
	},

	created() {
		this.mailer = createMailer();
		this.sms = createSmsSender();
	},

	async stopped() {
		this.mailer.close();
	}
});
