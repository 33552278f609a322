/**
 * notifications — emails (and later SMS) sent because something happened, and the delivery log.
 *
 * Each consumed event is handled once (inbox). The message is rendered from a template
 * (`notifications/templates.ts`), sent through nodemailer (`notifications/mailer.ts`), and the
 * delivery — sent or failed — is written to the log with its `notification.sent` /
 * `notification.failed` event.
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
import { DbMixin } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { defineService, ServiceThis } from "../mixins/service";
import { settings } from "../mixins/settings";
import { createMailer, Mailer } from "./notifications/mailer";
import { emailVerification, orderConfirmed, Rendered, TemplateName } from "./notifications/templates";

const emailAddress = Joi.string().trim().lowercase().max(320).email({ tlds: false });
const money = Joi.object({ amount: Joi.number().integer().required(), currency: Joi.string().length(3).required() }).unknown(true);

/** What each consumed event must carry for its message; anything else in the payload is ignored. */
const PAYLOADS = {
	verificationRequested: Joi.object({
		customerId: Joi.string().guid().required(),
		email: emailAddress.required(),
		firstName: Joi.string().allow("", null),
		token: Joi.string().min(1).max(200).required(),
		expiresAt: Joi.string().isoDate().allow(null)
	}).unknown(true),
	orderConfirmed: Joi.object({
		orderId: Joi.string().guid().required(),
		orderNumber: Joi.string().min(1).max(40).required(),
		customerId: Joi.string().guid().allow(null),
		customerEmail: emailAddress.allow(null, ""),
		total: money.allow(null)
	}).unknown(true)
};

interface Delivery {
	channel: "email";
	to: string;
	template: TemplateName;
	message: Rendered;
	data: Record<string, unknown>;
}

interface NotificationRow {
	id: string;
	channel: "email" | "sms";
	to: string;
	template: string;
	subject: string;
	text: string;
	status: "sent" | "failed";
	error: string | null;
	data: Record<string, unknown> | string;
	event_id: string | null;
	created_at: Date | string;
}

interface Methods {
	payloadOf<T>(env: EventEnvelope, schema: Joi.ObjectSchema): T | null;
	deliver(trx: Knex.Transaction, cause: EventEnvelope, d: Delivery): Promise<void>;
}

interface Vars {
	mailer: Mailer;
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
						id: r.id, channel: r.channel, to: r.to, template: r.template, subject: r.subject, text: r.text,
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
					const rows = await this.table("notifications", trx)
						.whereRaw("data->>'customerId' = ?", [customerId])
						.update({ to: "erased", subject: "(erased)", text: "(erased)", data: JSON.stringify({ customerId, erased: true }) })
						.returning("id");
					const ids = rows.map((r: { id: string }) => String(r.id));
					if (ids.length === 0) return;
					await this.table("outbox", trx)
						.whereIn("event_name", ["notification.sent", "notification.failed"])
						.whereRaw("envelope->'payload'->>'notificationId' = ANY(?)", [ids])
						.update({ envelope: this.knex.raw(`jsonb_set(envelope, '{payload,to}', '"erased"')`) });
				});
			}
		},

		/** The verification email; `data.token` is kept so an operator (and the tests) can find it. */
		"customer.verification_requested": {
			async handler(env) {
				const p = this.payloadOf<{ customerId: string; email: string; firstName?: string | null; token: string; expiresAt?: string | null }>(env, PAYLOADS.verificationRequested);
				if (!p) return;
				const verifyUrl = `${settings.storefrontUrl}/verify-email`;
				await this.handleOnce(env, "notifications.customer.verification_requested", trx =>
					this.deliver(trx, env, {
						channel: "email", to: p.email, template: "email_verification",
						message: emailVerification({ firstName: p.firstName, token: p.token, expiresAt: p.expiresAt, verifyUrl }),
						data: { customerId: p.customerId, token: p.token }
					})
				);
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
				await this.handleOnce(env, "notifications.order.confirmed", trx =>
					this.deliver(trx, env, {
						channel: "email", to: p.customerEmail!, template: "order_confirmed",
						message: orderConfirmed({ orderNumber: p.orderNumber, total: p.total }),
						data: { orderId: p.orderId, orderNumber: p.orderNumber, customerId: p.customerId ?? null }
					})
				);
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

		/** Sends (see the header for why inside the transaction), then logs the outcome and records its event. */
		async deliver(this: This, trx: Knex.Transaction, cause: EventEnvelope, d: Delivery) {
			const id = randomUUID();
			let error: string | null = null;
			try {
				await this.mailer.send({ to: d.to, subject: d.message.subject, text: d.message.text });
			} catch (err: any) {
				error = String(err?.message ?? err).slice(0, 1000) || "unknown error";
				this.logger.warn(`Email ${d.template} to ${d.to} failed: ${error}`);
			}
			const status = error ? "failed" : "sent";
			await this.table("notifications", trx).insert({
				id, channel: d.channel, to: d.to, template: d.template, subject: d.message.subject, text: d.message.text,
				status, error, data: JSON.stringify(d.data), event_id: cause.event_id
			});
			await this.record(trx, error ? "notification.failed" : "notification.sent", id, {
				notificationId: id, channel: d.channel, to: d.to, template: d.template, ...(error ? { error } : {})
			}, cause);
		}
	},

	created() {
		this.mailer = createMailer();
	},

	async stopped() {
		this.mailer.close();
	}
});
