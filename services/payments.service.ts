/**
 * payments — card payments of orders through a provider adapter (`payments/provider.ts`):
 * tokenize, authorize, void, capture, refund.
 *
 * Card numbers stay in the provider's vault (table `card_tokens`); everything else — the
 * saga's data, payment rows, events — holds only the token, the brand and the last four
 * digits. Nothing here logs a card number.
 *
 * The provider is called outside any database transaction (a slow provider must not hold a
 * connection); its answer and the events are then written in one transaction. A refusal is an
 * answer too: the failed payment, its `payment.failed` event and the refusal stored under the
 * idempotency key commit together, and only then is the 402 thrown — a repeat with the key
 * gets the same 402 without asking the provider again. The provider is itself idempotent
 * (the key travels with the request), so a request repeated after a crash cannot charge twice.
 */
import Joi from "joi";
import { randomUUID } from "node:crypto";
import { Errors } from "moleculer";
import { conflict, forbidden, notFound, paymentRefused, temporary, validationError } from "../contracts/errors";
import { CURRENCIES } from "../contracts/money";
import { DbMixin, StoredAnswer, type Trx } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { Ctx, defineService, ServiceThis } from "../infra/service";
import { checkCard } from "./payments/card";
import { settings } from "../infra/settings";
import { ACTIVE_STATUSES, checkRefund, PAYMENT_METHODS, PaymentMethod, PaymentRow, PaymentStatus, RefundRow, REFUNDABLE_STATUSES, toPayment } from "./payments/payment";
import { PaymentProvider, ProviderFailure, RefusalType, SimulatedCardProvider, StartResult } from "./payments/provider";
import { uuid } from "../contracts/ids";

const idempotencyKey = Joi.string().max(200);
/** Money a card can be charged: at least one minor unit. */
const chargeable = Joi.object({
	amount: Joi.number().integer().min(1).max(100_000_000_00).required(),
	currency: Joi.string().valid(...CURRENCIES).required()
});

/** Where PayPal sends the buyer back: a web address. */
const webUrl = Joi.string().uri({ scheme: ["http", "https"] }).max(2000);

type Answer = StoredAnswer;

interface AuthorizeParams {
	orderId: string;
	amount: { amount: number; currency: string };
	method: PaymentMethod;
	paymentToken?: string;
	blikCode?: string;
	returnUrl?: string;
	cancelUrl?: string;
	customerId?: string | null;
	idempotencyKey?: string;
}

interface Vars {
	provider: PaymentProvider;
}

interface Methods {
	authorizeOrder(ctx: Ctx, params: AuthorizeParams): Promise<unknown>;
	decideByBuyer(ctx: Ctx, e: { provider: string; eventId: string; transactionId: string; approved: boolean }): Promise<{ received: true; duplicate: boolean; outcome: string; paymentId: string }>;
	redirectBuyer(ctx: Ctx, token: string, outcome: { paymentId: string }): Promise<unknown>;
	lockOrderId(trx: Trx, orderId: string): Promise<void>;
	activePayment(orderId: string, trx?: Trx): Promise<PaymentRow | undefined>;
	view(row: PaymentRow, trx?: Trx): Promise<ReturnType<typeof toPayment>>;
	unavailable(outcome: ProviderFailure, what: string): Errors.MoleculerError;
	internalOnly(ctx: Ctx): void;
}

type This = ServiceThis<Methods, Vars>;

export default defineService<Methods, Vars>({
	name: "payments",
	mixins: [DbMixin("payments"), OutboxMixin()],

	actions: {
		/** The card goes into the vault; the caller keeps only the token. */
		tokenize: {
			params: Joi.object({
				// No pattern here: a failed pattern's message would repeat the number.
				cardNumber: Joi.string().trim().max(40).required(),
				expMonth: Joi.number().integer().min(1).max(12).required(),
				expYear: Joi.number().integer().min(2000).max(2100).required(),
				cvc: Joi.string().pattern(/^[0-9]{3,4}$/).required().messages({ "string.pattern.base": "'cvc' must be 3 or 4 digits" })
			}),
			async handler(ctx) {
				const { expMonth, expYear } = ctx.params;
				const card = checkCard(ctx.params);
				if (!card.ok) {
					if (card.problem === "invalid_number") throw validationError(card.message, [{ field: "cardNumber", message: card.message, type: "card.invalid" }]);
					if (card.problem === "unsupported") throw paymentRefused("UNSUPPORTED_CARD", card.message);
					throw paymentRefused("PAYMENT_DECLINED", "The card was declined: it has expired");
				}
				const paymentToken = `tok_${randomUUID().replace(/-/g, "")}`;
				// The CVC is checked for shape and never stored.
				await this.table("card_tokens").insert({ token: paymentToken, card_number: card.number, brand: card.brand, last4: card.last4, exp_month: expMonth, exp_year: expYear });
				return { paymentToken, brand: card.brand, last4: card.last4 };
			}
		},

		/**
		 * The checkout's choice of payment method (card, BLIK, PayPal) for a cart:
		 * `payment.method_selected` when it changes; choosing the same again changes nothing.
		 */
		selectMethod: {
			params: Joi.object({ cartId: uuid.required(), customerId: uuid.allow(null), method: Joi.string().valid(...PAYMENT_METHODS).required(), idempotencyKey }),
			async handler(ctx) {
				const { cartId, customerId, method } = ctx.params;
				return this.transaction(async trx => {
					const before = await this.table("method_choices", trx).where({ cart_id: cartId }).forUpdate().first();
					if (before?.method === method) return { cartId, method, changed: false };
					await this.table("method_choices", trx)
						.insert({ cart_id: cartId, customer_id: customerId ?? null, method })
						.onConflict("cart_id")
						.merge({ method, customer_id: customerId ?? null, updated_at: this.knex.fn.now() });
					await this.record(trx, "payment.method_selected", cartId, { cartId, customerId: customerId ?? null, method, previousMethod: before?.method ?? null, selectedAt: new Date().toISOString() }, ctx);
					return { cartId, method, changed: true };
				});
			}
		},

		/**
		 * Step `authorizePayment` of place-order. A card is authorized at once (or refused, 402).
		 * BLIK and PayPal answer `pending`: the buyer decides at the bank / at PayPal, and the
		 * outcome arrives later (`payment.authorized` or `payment.failed`) through the provider's
		 * webhook or PayPal's return. One active payment per order: a repeat answers it.
		 */
		authorize: {
			params: Joi.object({
				orderId: uuid.required(),
				amount: chargeable.required(),
				method: Joi.string().valid(...PAYMENT_METHODS).default("card"),
				paymentToken: Joi.string().max(64).when("method", { not: Joi.valid("blik", "paypal"), then: Joi.required() }),
				blikCode: Joi.string()
					.pattern(/^[0-9]{6}$/)
					.when("method", { is: "blik", then: Joi.required() })
					.messages({ "string.pattern.base": "'blikCode' must be six digits" }),
				returnUrl: webUrl.when("method", { is: "paypal", then: Joi.required() }),
				cancelUrl: webUrl.when("method", { is: "paypal", then: Joi.required() }),
				customerId: uuid.allow(null),
				idempotencyKey
			}),
			async handler(ctx) {
				return this.authorizeOrder(ctx, ctx.params);
			}
		},

		/** Starts a PayPal payment: `authorize` with method paypal; the answer carries `redirectUrl`. */
		initiatePayPal: {
			params: Joi.object({
				orderId: uuid.required(),
				amount: chargeable.required(),
				returnUrl: webUrl.required(),
				cancelUrl: webUrl.required(),
				customerId: uuid.allow(null),
				idempotencyKey
			}),
			async handler(ctx) {
				return this.authorizeOrder(ctx, { ...ctx.params, method: "paypal" });
			}
		},

		/**
		 * The provider's webhook, passed on by the gateway once it has checked the signature over
		 * the raw body. A repeated `eventId` changes nothing.
		 */
		webhook: {
			params: Joi.object({
				provider: Joi.string().max(50).required(),
				eventId: Joi.string().min(1).max(200).required(),
				transactionId: Joi.string().min(1).max(100).required(),
				status: Joi.string().valid("approved", "rejected").required()
			}).unknown(true),
			async handler(ctx) {
				const { provider, eventId, transactionId, status } = ctx.params;
				return this.decideByBuyer(ctx, { provider, eventId, transactionId, approved: status === "approved" });
			}
		},

		/** The buyer comes back from PayPal having approved: the payment is authorized, the browser sent on to `returnUrl`. */
		paypalReturn: {
			params: Joi.object({ token: Joi.string().min(1).max(100).required() }),
			async handler(ctx) {
				const outcome = await this.decideByBuyer(ctx, { provider: "paypal", eventId: `paypal:return:${ctx.params.token}`, transactionId: ctx.params.token, approved: true });
				return this.redirectBuyer(ctx, ctx.params.token, outcome);
			}
		},

		/** The buyer cancelled at PayPal: the payment fails, the browser is sent on to `cancelUrl`. */
		paypalCancel: {
			params: Joi.object({ token: Joi.string().min(1).max(100).required() }),
			async handler(ctx) {
				const outcome = await this.decideByBuyer(ctx, { provider: "paypal", eventId: `paypal:cancel:${ctx.params.token}`, transactionId: ctx.params.token, approved: false });
				return this.redirectBuyer(ctx, ctx.params.token, outcome);
			}
		},

		/**
		 * The compensation of `authorizePayment`, or a cancellation: releases the order's
		 * authorized payment, or cancels one still waiting for the buyer (BLIK, PayPal) so that an
		 * approval arriving later is voided, never kept. Nothing to release answers null.
		 */
		void: {
			params: Joi.object({ orderId: uuid.required(), reason: Joi.string().max(1000).allow(null, ""), idempotencyKey }),
			async handler(ctx) {
				const A = "payments.void";
				const { orderId, reason, idempotencyKey: key } = ctx.params;
				const stored = await this.storedAnswer(key, A);
				if (stored.found) return stored.result;
				const held = await this.activePayment(orderId);
				if (held?.status === "authorized" || held?.status === "pending") {
					const r = held.status === "authorized" ? await this.provider.void(held.provider_ref!) : await this.provider.cancel(held.provider_ref!);
					if (!r.ok) throw this.unavailable(r, "void the payment");
				}
				return this.idempotent(key, A, async trx => {
					await this.lockOrderId(trx, orderId);
					await this.table("voided_orders", trx).insert({ order_id: orderId, reason: reason || null }).onConflict("order_id").ignore();
					const p = await this.activePayment(orderId, trx);
					if (!p) return null;
					if (p.status !== "authorized" && p.status !== "pending") {
						throw conflict("INVALID_TRANSITION", `This payment was already ${p.status}; refund it instead`, { orderId, paymentId: p.id, status: p.status });
					}
					if (p.id !== held?.id || p.status !== held.status) throw temporary("The payment changed meanwhile; try again", { orderId });
					const [voided] = await this.table("payments", trx)
						.where({ id: p.id, status: p.status })
						.update({ status: "voided", void_reason: reason || null, voided_at: this.knex.fn.now(), updated_at: this.knex.fn.now() })
						.returning("*");
					// The buyer's answer landed in between (a webhook): try again, the retry sees it.
					if (!voided) throw temporary("The payment changed meanwhile; try again", { orderId });
					const view = await this.view(voided, trx);
					await this.record(trx, "payment.voided", p.id, {
						paymentId: p.id, orderId, method: p.method, amount: view.amount, transactionId: p.provider_ref, reason: reason || null,
						wasPending: p.status === "pending", voidedAt: view.voidedAt
					}, ctx);
					return view;
				});
			}
		},

		/** Takes the authorized money (on shipment). */
		capture: {
			params: Joi.object({ orderId: uuid.required(), idempotencyKey }),
			async handler(ctx) {
				this.internalOnly(ctx);
				const A = "payments.capture";
				const { orderId, idempotencyKey: key } = ctx.params;
				const stored = await this.storedAnswer(key, A);
				if (stored.found) return stored.result;
				const p = await this.activePayment(orderId);
				if (!p) {
					const any = await this.table("payments").where({ order_id: orderId }).first();
					return this.refuse(key, A, any ? conflict("INVALID_TRANSITION", "This order has no authorized payment to capture", { orderId }) : notFound("Payment of order", orderId));
				}
				if (p.status !== "authorized") return this.refuse(key, A, conflict("INVALID_TRANSITION", `This payment was already ${p.status}`, { orderId, paymentId: p.id, status: p.status }));
				const amount = { amount: Number(p.amount), currency: p.currency };
				const r = await this.provider.capture(p.provider_ref!, amount);
				if (!r.ok) throw this.unavailable(r, "capture the payment");
				return this.idempotent(key, A, async trx => {
					const [captured] = await this.table("payments", trx)
						.where({ id: p.id, status: "authorized" })
						.update({ status: "captured", captured_amount: amount.amount, captured_at: this.knex.fn.now(), updated_at: this.knex.fn.now() })
						.returning("*");
					if (!captured) throw conflict("INVALID_TRANSITION", "The payment changed meanwhile", { orderId, paymentId: p.id });
					const view = await this.view(captured, trx);
					await this.record(trx, "payment.captured", p.id, { paymentId: p.id, orderId, amount, capturedAt: view.capturedAt }, ctx);
					return view;
				});
			}
		},

		/** Gives captured money back, all of it or part; never more than was captured. */
		refund: {
			params: Joi.object({ orderId: uuid.required(), amount: chargeable, reason: Joi.string().max(1000).allow(null, ""), idempotencyKey }),
			async handler(ctx) {
				this.internalOnly(ctx);
				const A = "payments.refund";
				const { orderId, amount: requested, reason, idempotencyKey: key } = ctx.params;
				const stored = await this.storedAnswer(key, A);
				if (stored.found) return stored.result;
				const p = await this.activePayment(orderId);
				if (!p) return this.refuse(key, A, notFound("Payment of order", orderId));
				if (!REFUNDABLE_STATUSES.includes(p.status)) {
					const message = p.status === "authorized" ? "This payment was not captured; void it instead" : `This payment was already ${p.status}`;
					return this.refuse(key, A, conflict(p.status === "refunded" ? "REFUND_EXCEEDS_CAPTURED" : "INVALID_TRANSITION", message, { orderId, paymentId: p.id, status: p.status }));
				}
				const check = checkRefund(Number(p.captured_amount), Number(p.refunded_amount), p.currency, requested);
				if (!check.ok) {
					return this.refuse(key, A, check.reason === "currency"
						? validationError(check.message, [{ field: "amount.currency", message: check.message }])
						: conflict("REFUND_EXCEEDS_CAPTURED", check.message, { orderId, paymentId: p.id, remaining: { amount: check.remaining, currency: p.currency } }));
				}
				const refundId = randomUUID();
				const r = await this.provider.refund(p.provider_ref!, check.amount, { idempotencyKey: key ?? refundId });
				if (!r.ok) throw this.unavailable(r, "refund the payment");
				return this.idempotent(key, A, async trx => {
					const locked: PaymentRow = await this.table("payments", trx).where({ id: p.id }).forUpdate().first();
					const again = checkRefund(Number(locked.captured_amount), Number(locked.refunded_amount), locked.currency, check.amount);
					if (!again.ok) {
						this.logger.error(`Refund ${r.providerRef} of order ${orderId} was made at the provider but another refund got there first; reconcile it`);
						throw conflict("REFUND_EXCEEDS_CAPTURED", again.message, { orderId, paymentId: p.id });
					}
					await this.table("refunds", trx).insert({ id: refundId, payment_id: p.id, order_id: orderId, amount: check.amount.amount, currency: check.amount.currency, reason: reason || null, provider_ref: r.providerRef });
					const [updated] = await this.table("payments", trx)
						.where({ id: p.id })
						.update({ refunded_amount: again.refundedAfter, status: again.status, updated_at: this.knex.fn.now() })
						.returning("*");
					const view = await this.view(updated, trx);
					await this.record(trx, "payment.refunded", p.id, {
						paymentId: p.id, orderId, refundId, amount: check.amount, refundAmount: check.amount, totalRefunded: view.refundedAmount, fullyRefunded: again.status === "refunded",
						reason: reason || null, refundedAt: new Date().toISOString()
					}, ctx);
					await this.recordIntegration(trx, "RefundProcessedNotification", orderId, {
						orderId, customerId: locked.customer_id, paymentId: p.id, refundAmount: check.amount, refundId
					}, ctx);
					return { ...view, refundId };
				});
			}
		},

		/**
		 * The order's payment: the one waiting, holding or having taken its money, else its latest
		 * attempt — with `transactionId`, `captured` and `refunded`. 404 when the order never paid.
		 */
		get: {
			params: Joi.object({ orderId: uuid.required() }),
			async handler(ctx) {
				this.internalOnly(ctx);
				const { orderId } = ctx.params;
				const row: PaymentRow | undefined =
					(await this.activePayment(orderId)) ??
					(await this.table("payments").where({ order_id: orderId }).orderBy([{ column: "created_at", order: "desc" }, { column: "id", order: "desc" }]).first());
				if (!row) throw notFound("Payment of order", orderId);
				return this.view(row);
			}
		},

		/** Every payment of an order, oldest first, with its refunds. */
		list: {
			params: Joi.object({ orderId: uuid.required() }),
			async handler(ctx) {
				this.internalOnly(ctx);
				const rows: PaymentRow[] = await this.table("payments").where({ order_id: ctx.params.orderId }).orderBy([{ column: "created_at" }, { column: "id" }]);
				const refunds: Array<RefundRow> = rows.length ? await this.table("refunds").whereIn("payment_id", rows.map(r => r.id)).orderBy("created_at") : [];
				return rows.map(r => toPayment(r, refunds.filter(f => f.payment_id === r.id)));
			}
		},

		/** Internal: the payments of many orders at once ({ [orderId]: payment }), for order lists. */
		ofOrders: {
			visibility: "public",
			params: Joi.object({ orderIds: Joi.array().items(uuid).max(500).required() }),
			async handler(ctx) {
				const ids: string[] = ctx.params.orderIds;
				if (ids.length === 0) return {};
				const rows: PaymentRow[] = await this.table("payments").whereIn("order_id", ids).orderBy([{ column: "created_at" }, { column: "id" }]);
				const out: Record<string, ReturnType<typeof toPayment>> = {};
				for (const r of rows) {
					const current = out[r.order_id];
					// The active payment wins; else the latest attempt.
					if (!current || ACTIVE_STATUSES.includes(r.status) || !ACTIVE_STATUSES.includes(current.status)) out[r.order_id] = toPayment(r);
				}
				return out;
			}
		}
	},

	methods: {
		/** `payments.authorize` for every method; see that action. */
		async authorizeOrder(this: This, ctx: Ctx, params: AuthorizeParams) {
			const A = "payments.authorize";
			const { orderId, amount, method, idempotencyKey: key } = params;
			const stored = await this.storedAnswer(key, A);
			if (stored.found) return stored.result;

			const active = await this.activePayment(orderId);
			if (active) return this.settle(key, A, { result: await this.view(active) });
			const voidedRefusal = () => conflict("INVALID_TRANSITION", "The payment of this order was voided; it cannot be authorized again", { orderId });
			if (await this.table("voided_orders").where({ order_id: orderId }).first()) return this.refuse(key, A, voidedRefusal());

			const paymentId = randomUUID();
			const providerKey = key ?? paymentId;
			let card: { brand: string; last4: string } | null = null;
			let outcome: StartResult;
			if (method === "card") {
				const vault = await this.table("card_tokens").where({ token: params.paymentToken }).first();
				if (!vault) return this.refuse(key, A, validationError("Unknown payment token", [{ field: "paymentToken", message: "'paymentToken' is not a known token" }]));
				card = { brand: vault.brand, last4: vault.last4 };
				outcome = await this.provider.authorize({ number: vault.card_number, expMonth: vault.exp_month, expYear: vault.exp_year, brand: vault.brand }, amount, { idempotencyKey: providerKey });
			} else if (method === "blik") {
				outcome = await this.provider.startBlik(params.blikCode!, amount, { idempotencyKey: providerKey });
			} else {
				outcome = await this.provider.startPayPal(amount, { returnUrl: params.returnUrl!, cancelUrl: params.cancelUrl!, idempotencyKey: providerKey });
			}
			if (!outcome.ok && outcome.type === "PROVIDER_UNAVAILABLE") {
				throw this.unavailable(outcome, method === "paypal" ? "start the PayPal payment" : method === "blik" ? "start the BLIK payment" : "authorize the payment");
			}
			const holds: PaymentStatus = method === "card" ? "authorized" : "pending";
			const customerId = params.customerId ?? null;

			let release = false;
			const answer = await this.transaction(async (trx): Promise<Answer | { replay: true }> => {
				if (key) {
					// A concurrent repeat with this key waits here for the first to commit, then answers as it did.
					if (!(await this.claimKey(trx, key, A))) return { replay: true };
				}
				await this.lockOrderId(trx, orderId);
				const row = {
					id: paymentId, order_id: orderId, method, amount: amount.amount, currency: amount.currency, customer_id: customerId,
					payment_token: method === "card" ? params.paymentToken : null, brand: card?.brand ?? null, last4: card?.last4 ?? null,
					return_url: params.returnUrl ?? null, cancel_url: params.cancelUrl ?? null, idempotency_key: key ?? null
				};
				const about = { paymentId, orderId, method, amount, customerId, ...(card ?? {}) };
				let answer: Answer;
				if (await this.table("voided_orders", trx).where({ order_id: orderId }).first()) {
					release = outcome.ok;
					answer = { error: voidedRefusal() };
				} else if (outcome.ok) {
					const [inserted] = await this.table("payments", trx)
						.insert({
							...row, status: holds, provider_ref: outcome.providerRef, redirect_url: outcome.redirectUrl ?? null,
							authorized_at: holds === "authorized" ? this.knex.fn.now() : null
						})
						.onConflict(this.knex.raw(`(order_id) WHERE status IN (${ACTIVE_STATUSES.map(s => `'${s}'`).join(",")})`))
						.ignore()
						.returning("*");
					if (!inserted) {
						// Another authorization of this order won: keep it, release ours.
						release = true;
						answer = { result: await this.view((await this.activePayment(orderId, trx))!, trx) };
					} else {
						const p = await this.view(inserted, trx);
						await this.record(trx, "payment.initiated", paymentId, { ...about, transactionId: outcome.providerRef, redirectUrl: p.redirectUrl }, ctx);
						if (holds === "authorized") {
							await this.record(trx, "payment.authorized", paymentId, {
								...about, transactionId: outcome.providerRef, authorizationId: outcome.providerRef, authorizedAt: p.authorizedAt
							}, ctx);
						}
						answer = { result: p };
					}
				} else {
					await this.table("payments", trx).insert({ ...row, status: "failed", failure_type: outcome.type, failure_reason: outcome.message });
					await this.record(trx, "payment.initiated", paymentId, about, ctx);
					await this.record(trx, "payment.failed", paymentId, { ...about, reason: outcome.message, type: outcome.type }, ctx);
					await this.recordIntegration(trx, "PaymentFailedNotification", orderId, { orderId, customerId, paymentId, amount, failureReason: outcome.message }, ctx);
					answer = { error: paymentRefused(outcome.type as RefusalType, outcome.message) };
				}
				if (key) await this.settle(key, A, answer, trx);
				return answer;
			});
			if (release && outcome.ok) {
				const ref = outcome.providerRef;
				const released = method === "card" ? this.provider.void(ref) : this.provider.cancel(ref);
				await released.catch(err => this.logger.warn(`Releasing a surplus authorization of order ${orderId} failed: ${err.message}`));
			}
			if ("replay" in answer) {
				const again = await this.storedAnswer(key, A);
				return again.found ? again.result : null;
			}
			if ("error" in answer) throw answer.error;
			return answer.result;
		},

		/**
		 * The buyer's decision on a pending payment (BLIK webhook, PayPal return or cancel), once
		 * per event id. Pending → authorized (`payment.authorized`) or failed (`payment.failed`).
		 * An approval of a payment already given up (voided) is released at the provider and
		 * recorded as `payment.voided` — it never revives the payment. Anything else is kept as
		 * received and changes nothing.
		 */
		async decideByBuyer(this: This, ctx: Ctx, e: { provider: string; eventId: string; transactionId: string; approved: boolean }) {
			const seen = await this.table("webhook_events").where({ event_id: e.eventId }).first();
			if (seen) return { received: true, duplicate: true, outcome: seen.outcome, paymentId: seen.payment_id };
			const found: PaymentRow | undefined = await this.table("payments").where({ provider_ref: e.transactionId }).first();
			if (!found) throw notFound("Payment", e.transactionId);
			let releasedLate = false;
			if (e.approved && found.status === "voided") {
				// Given up before the buyer approved: the money the bank now holds goes back.
				const r = await this.provider.void(found.provider_ref!);
				if (!r.ok) throw this.unavailable(r, "release a late approval");
				releasedLate = true;
			}
			return this.transaction(async trx => {
				const claimed = await this.table("webhook_events", trx)
					.insert({ event_id: e.eventId, provider: e.provider, transaction_id: e.transactionId, status: e.approved ? "approved" : "rejected", payment_id: found.id, outcome: "received" })
					.onConflict("event_id")
					.ignore()
					.returning("event_id");
				if (claimed.length === 0) {
					const first = await this.table("webhook_events", trx).where({ event_id: e.eventId }).first();
					return { received: true, duplicate: true, outcome: first?.outcome ?? "received", paymentId: found.id };
				}
				const p: PaymentRow = await this.table("payments", trx).where({ id: found.id }).forUpdate().first();
				const amount = { amount: Number(p.amount), currency: p.currency };
				const about = { paymentId: p.id, orderId: p.order_id, method: p.method, amount, customerId: p.customer_id, transactionId: p.provider_ref };
				let outcome: string;
				if (p.status === "pending" && e.approved) {
					const [row] = await this.table("payments", trx)
						.where({ id: p.id })
						.update({ status: "authorized", authorized_at: this.knex.fn.now(), updated_at: this.knex.fn.now() })
						.returning("*");
					await this.record(trx, "payment.authorized", p.id, { ...about, authorizationId: p.provider_ref, authorizedAt: new Date(row.authorized_at).toISOString() }, ctx);
					outcome = "approved";
				} else if (p.status === "pending") {
					const reason = p.method === "paypal" ? "The buyer cancelled the PayPal payment" : "The buyer's bank rejected the BLIK payment";
					await this.table("payments", trx)
						.where({ id: p.id })
						.update({ status: "failed", failure_type: "PAYMENT_DECLINED", failure_reason: reason, updated_at: this.knex.fn.now() });
					await this.record(trx, "payment.failed", p.id, { ...about, reason, type: "PAYMENT_DECLINED" }, ctx);
					await this.recordIntegration(trx, "PaymentFailedNotification", p.order_id, { orderId: p.order_id, customerId: p.customer_id, paymentId: p.id, amount, failureReason: reason }, ctx);
					outcome = "rejected";
				} else if (p.status === "voided" && e.approved) {
					// Voided between the check above and this lock: the provider is asked again with the retry.
					if (!releasedLate) throw temporary("The payment changed meanwhile; try again", { transactionId: e.transactionId });
					await this.record(trx, "payment.voided", p.id, {
						...about, reason: "Approved after the payment was given up; the authorization was released", lateApproval: true, voidedAt: new Date().toISOString()
					}, ctx);
					this.logger.warn(`Late approval of payment ${p.id} (order ${p.order_id}) after it was voided: released at the provider`);
					outcome = "late_approval_voided";
				} else {
					outcome = `ignored_${p.status}`;
				}
				await this.table("webhook_events", trx).where({ event_id: e.eventId }).update({ outcome });
				return { received: true, duplicate: false, outcome, paymentId: p.id };
			});
		},

		/** Sends the buyer's browser back to the storefront: `returnUrl` when the payment stands, else `cancelUrl`. */
		async redirectBuyer(this: This, ctx: Ctx, token: string, outcome: { paymentId: string }) {
			const p: PaymentRow = await this.table("payments").where({ id: outcome.paymentId }).first();
			const ok = ["authorized", "captured", "partially_refunded", "refunded"].includes(p.status);
			const target = (ok ? p.return_url : p.cancel_url) ?? p.return_url;
			ctx.meta.$statusCode = 302;
			ctx.meta.$location = target ?? "/";
			return { paymentId: p.id, orderId: p.order_id, status: p.status, token };
		},

		/** Serializes an authorization and a void of one order (a void must see the authorization, or block it). */
		async lockOrderId(trx: Trx, orderId: string) {
			await trx.raw(`SELECT pg_advisory_xact_lock(hashtextextended(?, 0))`, [`payments:${orderId}`]);
		},

		async activePayment(this: This, orderId: string, trx?: Trx) {
			return this.table("payments", trx).where({ order_id: orderId }).whereIn("status", ACTIVE_STATUSES as string[]).first();
		},

		async view(this: This, row: PaymentRow, trx?: Trx) {
			const refunds: RefundRow[] = await this.table("refunds", trx).where({ payment_id: row.id }).orderBy("created_at");
			return toPayment(row, refunds);
		},

		/** The provider did not answer: a temporary failure, worth a retry; nothing changed. */
		unavailable(outcome: ProviderFailure, what: string) {
			if (outcome.type !== "PROVIDER_UNAVAILABLE") return paymentRefused(outcome.type, outcome.message);
			return temporary(`The payment provider could not ${what}: ${outcome.message}`);
		},

		/** Capture, refund and reading payments are for the services and admins, never for a customer directly. */
		internalOnly(ctx: Ctx) {
			if (ctx.meta.user && ctx.meta.user.role !== "admin") throw forbidden("Payments are handled by the checkout");
		}
	},

	created() {
		if (!settings.webhookSecret) throw new Error("WEBHOOK_SECRET must be set: the payment provider's webhooks cannot be signed or checked without it");
		this.provider = new SimulatedCardProvider(undefined, {
			url: () => settings.webhookTargetUrl,
			secret: settings.webhookSecret,
			delayMs: settings.blikAnswerDelayMs,
			approveUrl: settings.paypalApproveUrl,
			onGiveUp: (body, reason) => this.logger.warn(`The payment provider gave up sending webhook ${body.eventId} (${body.status} ${body.transactionId}): ${reason}`)
		});
	},

	async stopped() {
		this.provider.close();
	}
});
