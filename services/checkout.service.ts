/**
 * checkout — places orders. `checkout.place` checks what can be refused at once (unverified
 * email, empty or locked cart, bad card), then starts the place-order saga and answers 202
 * with the order. The saga engine keeps every saga in Redis (in-process store in the embedded
 * mode) and any checkout replica resumes sagas whose owner died.
 *
 * Idempotency of place: the saga id (and the order id) are derived from (customer,
 * Idempotency-Key), and the saga is created only if absent — the saga itself is the record of
 * the request, so a retry always finds the order its first attempt made (`placeOnce`).
 */
import Joi from "joi";
import { Errors } from "moleculer";
import Redis, { Cluster } from "ioredis";
import { randomUUID } from "node:crypto";
import type { PaymentAuthorized, PaymentFailed } from "../contracts/actions";
import type { EventEnvelope } from "../contracts/events";
import { conflict, isClientError, notFound, temporary, unauthorized } from "../contracts/errors";
import { page, pageSize } from "../contracts/paging";
import { DbMixin } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { Ctx, defineService, ServiceThis } from "../infra/service";
import { settings } from "../infra/settings";
import { MemorySagaStore, RedisSagaStore, SAGA_STATUSES, SagaEngine, SagaOperatorError, SagaRecord, SagaStore } from "../sagas";
import { cancelOrder } from "../sagas/cancel-order.saga";
import { placeOrder, PlaceOrderData } from "../sagas/place-order.saga";
import { placeAnswer, refusalAtLock } from "./checkout/answer";
import { reconcilerMetrics, sagaMetrics } from "./checkout/metrics";
import { buyerId, placeIds } from "./checkout/place-ids";
import { cancelActions } from "./checkout/cancel.actions";
import { uuid } from "../contracts/ids";
import { reconcile, ReconcileReport } from "./checkout/reconciler";
import { orderSnapshot, paymentOf, sessionActions, sessionChannels, SessionMethods, sessionMethods } from "./checkout/session.actions";
import { crashAt } from "../infra/crash";

/** A retry of a place that is under way answers the current status within this long (never a gateway timeout). */
const RETRY_ANSWER_WAIT_MS = 1000;
/** How often a replica drops the sagas past their retention from the listing. */
const FORGET_EVERY_MS = 60_000;

/** One in-process saga store per process in the embedded mode, shared by checkout replicas in it. */
let memoryStore: MemorySagaStore | null = null;

interface Vars {
	store: SagaStore;
	engine: SagaEngine;
	redis: Redis | Cluster | null;
	reconcileTimer: NodeJS.Timeout | null;
	forgetTimer: NodeJS.Timeout | null;
	/** Counts what the reconciler did in /metrics. */
	countReconciled: (report: ReconcileReport) => void;
	/** Set once this replica stops: it takes over no dead node's sagas any more. */
	leaving?: boolean;
	/** Places being validated in this process, by saga id: a copy of one of them waits for it instead of validating again. */
	placing: Map<string, Promise<unknown>>;
}

interface Methods extends SessionMethods {
	announce(rec: SagaRecord<PlaceOrderData>): Promise<void>;
	operate(fn: () => Promise<SagaRecord>): Promise<any>;
	answer(ctx: Ctx, sagaId: string, waitMs: number): Promise<any>;
	placeOnce<C>(ctx: Ctx, customerId: string, key: string | undefined, check: () => Promise<C>, prepare: (ids: { sagaId: string; orderId: string }, checked: C) => Promise<PlaceOrderData>): Promise<any>;
	deliver(env: EventEnvelope<any>, key: string | undefined): Promise<void>;
	reconcile(): Promise<ReconcileReport>;
	answerFromOrder(ctx: Ctx, sagaId: string, orderId: string): Promise<any>;
}

type This = ServiceThis<Methods, Vars>;

export default defineService<Methods, Vars>({
	name: "checkout",
	mixins: [DbMixin("checkout"), OutboxMixin()],
	dependencies: ["carts", "orders", "inventory", "payments", "customers"],

	actions: {
		// The checkout session: address, shipping, delivery date, payment method, promo code, add-ons, totals.
		...sessionActions,

		// Cancelling an order before shipment: the cancel-order saga.
		...cancelActions,

		place: {
			rest: "POST /api/checkout/place",
			params: Joi.object({
				// Checked against the checkout's payment method: card fields, { blikCode } or { returnUrl, cancelUrl }.
				paymentDetails: Joi.object().required(),
				idempotencyKey: Joi.string().max(200)
			}),
			async handler(ctx) {
				// The logged-in customer, or the guest whose cart token came with the request.
				const buyer = buyerId(ctx.meta);
				if (!buyer) throw unauthorized("Log in, or send the X-Guest-Token of a guest cart");
				const key: string | undefined = ctx.params.idempotencyKey ?? (ctx.meta.idempotencyKey as string | undefined);
				return this.placeOnce(
					ctx,
					buyer,
					key,
					() => this.readyToPlace(ctx, ctx.params.paymentDetails),
					async ({ sagaId, orderId }, ready) => {
						const payment = await paymentOf(ctx, ready);
						return { sagaId, orderId, ...orderSnapshot(ready), ...payment };
					}
				);
			}
		},

		status: {
			rest: "GET /api/checkout/status/:sagaId",
			params: Joi.object({ sagaId: uuid.required() }),
			async handler(ctx) {
				return this.answer(ctx, ctx.params.sagaId, 0);
			}
		},

		// --- Operators ----------------------------------------------------------------------

		listSagas: {
			rest: "GET /api/admin/sagas",
			params: Joi.object({
				state: Joi.string().max(100),
				type: Joi.string().max(100),
				status: Joi.string().valid(...SAGA_STATUSES),
				page,
				pageSize
			}),
			async handler(ctx) {
				const { page, pageSize, state, type, status } = ctx.params;
				const { rows, total } = await this.store.list({ state, type, status, limit: pageSize, offset: (page - 1) * pageSize });
				return { rows: rows.map(redact), total, page, pageSize };
			}
		},

		getSaga: {
			rest: "GET /api/admin/sagas/:id",
			params: Joi.object({ id: uuid.required() }),
			async handler(ctx) {
				const rec = await this.store.get(ctx.params.id);
				if (!rec) throw notFound("Saga", ctx.params.id);
				return redact(rec);
			}
		},

		/** Operators (`ops.order`): the sagas of one order, newest first (its place-order saga, a cancel-order saga). */
		sagasOfOrder: {
			visibility: "public",
			params: Joi.object({ orderId: uuid.required() }),
			async handler(ctx) {
				const { rows } = await this.store.list({ limit: 5000, offset: 0 });
				return rows.filter(r => r.data?.orderId === ctx.params.orderId).map(redact);
			}
		},

		retrySaga: {
			rest: "POST /api/admin/sagas/:id/retry",
			params: Joi.object({ id: uuid.required() }),
			handler(ctx) {
				return this.operate(() => this.engine.retry(ctx.params.id));
			}
		},

		/** Operators and tests: one reconciler pass now (see services/checkout/reconciler.ts); answers what it did. */
		reconcile: {
			params: Joi.object({}),
			handler() {
				return this.reconcile();
			}
		},

		compensateSaga: {
			rest: "POST /api/admin/sagas/:id/compensate",
			params: Joi.object({ id: uuid.required() }),
			handler(ctx) {
				return this.operate(() => this.engine.compensate(ctx.params.id));
			}
		}
	},

	methods: {
		...sessionMethods,

		/**
		 * Place, exactly once per (customer, Idempotency-Key): the saga id is derived from them, a
		 * saga that exists answers at once with its current status (202), and otherwise `check`
		 * validates, `prepare` builds the saga's data (the card token) and the saga is created if absent — two copies of
		 * one request racing each other end up answering the same saga. Without a key, once per
		 * request: RabbitMQ hands a request whose replica died before answering to another one,
		 * and that copy must answer the first one's order, not place a second.
		 */
		async placeOnce<C>(this: This, ctx: Ctx, customerId: string, key: string | undefined, check: () => Promise<C>, prepare: (ids: { sagaId: string; orderId: string }, checked: C) => Promise<PlaceOrderData>) {
			const ids = placeIds(customerId, key, ctx.id);
			// The saga store may lose the saga (Redis emptied) while its order lives on: then the order's own state is the answer.
			const answer = async (waitMs: number) => {
				try {
					return await this.answer(ctx, ids.sagaId, waitMs);
				} catch (err) {
					if ((err as any)?.code !== 404) throw err;
					const fromOrder = await this.answerFromOrder(ctx, ids.sagaId, ids.orderId);
					// Lost before it made an order: nothing was placed; the same key places it again (once the reconciler freed the cart).
					if (!fromOrder) throw temporary("The checkout was interrupted before its order was made; place again with the same Idempotency-Key", { sagaId: ids.sagaId });
					return fromOrder;
				}
			};
			if (await this.store.get(ids.sagaId)) return answer(RETRY_ANSWER_WAIT_MS);
			// The order lookup (for a saga the store lost or let expire) and the checks run at once: the
			// lookup finds nothing at nearly every place, and waiting for it first made every place one
			// call slower. An order found is the answer, whatever the checks say (its cart is checked
			// out by now); only then does anything get written (the card token, the saga).
			const checked = check();
			checked.catch(() => undefined);
			const fromOrder = await this.answerFromOrder(ctx, ids.sagaId, ids.orderId);
			if (fromOrder) return fromOrder;
			const earlier = this.placing.get(ids.sagaId);
			if (earlier) {
				// The same request is being validated here already (say the original, redelivered after a crash, and a retry).
				await earlier.catch(() => undefined);
				if (await this.store.get(ids.sagaId)) return answer(RETRY_ANSWER_WAIT_MS);
			}
			const starting = (async () => {
				const data = await prepare(ids, await checked);
				return this.engine.startOnce(placeOrder.name, data, { sagaId: ids.sagaId, correlationId: ctx.meta.correlationId });
			})();
			this.placing.set(ids.sagaId, starting);
			try {
				const { created } = await starting;
				return answer(created ? settings.checkoutWaitMs : RETRY_ANSWER_WAIT_MS);
			} finally {
				if (this.placing.get(ids.sagaId) === starting) this.placing.delete(ids.sagaId);
			}
		},

		/**
		 * A retry whose saga is gone from the store: answered from the order orders keeps (202, as
		 * any retry), with the payment as payments knows it — null when there is no such order.
		 */
		async answerFromOrder(this: This, ctx: Ctx, sagaId: string, orderId: string) {
			// A short wait: while orders is down the customer gets a quick retryable 503, not a gateway timeout.
			const order = await ctx.call<any, any>("orders.get", { id: orderId }, { timeout: 3000 }).catch((err: any) => {
				if (err?.code === 404) return null;
				if (isClientError(err)) throw err;
				throw temporary("The order cannot be looked up right now; place again with the same Idempotency-Key", { orderId });
			});
			if (!order) return null;
			const payment = order.payment ?? null;
			ctx.meta.$statusCode = 202;
			return {
				orderId: order.id,
				orderNumber: order.orderNumber ?? null,
				status: order.status,
				total: order.total ?? null,
				totals: order.totals ?? null,
				payment: {
					method: payment?.method ?? order.paymentMethod ?? "card",
					status: payment?.status ?? "none",
					amount: payment?.amount ?? order.total ?? null,
					transactionId: payment?.transactionId ?? null
				},
				// No saga record: the checkout's progress is no longer known, the order's state is.
				checkout: { sagaId, state: null, status: null, reason: order.cancellation?.reason ?? null, failure: null }
			};
		},

		/** One reconciler pass, logged when it did anything. */
		async reconcile(this: This) {
			const report = await reconcile({
				knex: this.knex,
				store: this.store,
				call: (action, params) => this.broker.call(action, params),
				logger: this.logger,
				afterMs: settings.reconcileAfterMs,
				singleProcess: !settings.databaseUrl
			});
			this.countReconciled?.(report);
			const acted = report.finished + report.compensated + report.cartsCheckedOut + report.cartsUnlocked + report.failed;
			if (acted > 0) this.logger.info("Reconciler pass", report);
			return report;
		},

		/** Hands a payment's outcome to the saga waiting for it; an event nobody waits for any more is logged. */
		async deliver(this: This, env: EventEnvelope<any>, key: string | undefined) {
			if (typeof key !== "string") return void this.logger.warn(`${env.event_name} ${env.event_id} carries no order id; ignored`);
			const delivery = await this.engine.deliver(env.event_name, key, env.payload);
			if (delivery.accepted) return;
			// Every card payment's event lands here with no saga waiting for it (a card is answered at once): not worth a line.
			const log = delivery.reason === "no saga waits for it" ? this.logger.debug : this.logger.info;
			log.call(this.logger, `${env.event_name} ${env.event_id} for order ${key} ignored: ${delivery.reason}`, { sagaId: delivery.sagaId });
		},

		/** An operator's command on a saga; the engine's refusals become the API's typed errors. */
		async operate(fn: () => Promise<SagaRecord>) {
			try {
				return redact(await fn());
			} catch (err) {
				if (err instanceof SagaOperatorError) throw new Errors.MoleculerClientError(err.message, err.code, err.type);
				throw err;
			}
		},

		async answer(this: This, ctx: Ctx, sagaId: string, waitMs: number) {
			// Until the saga ends — or waits for the buyer (BLIK, PayPal): the answer then carries what the buyer needs.
			const rec = (await this.engine.waitFor(sagaId, { timeoutMs: waitMs, done: r => !isUnderWay(r) })) as SagaRecord<PlaceOrderData> | null;
			if (!rec) throw notFound("Checkout", sagaId);
			// A customer reads their own checkouts only, a guest those of their cart token.
			if (ctx.meta.user?.role === "customer" && rec.data.customerId !== ctx.meta.user.id) throw notFound("Checkout", sagaId);
			if (!ctx.meta.user && ctx.meta.guestToken && rec.data.customerId !== buyerId(ctx.meta)) throw notFound("Checkout", sagaId);
			const refusal = refusalAtLock(rec);
			if (refusal) throw conflict(refusal.type as any, refusal.message);
			ctx.meta.$statusCode = 202;
			return placeAnswer(rec);
		},

		/** Announces a finished saga once, whichever replica finished it and however often. */
		async announce(this: This, rec: SagaRecord<PlaceOrderData>) {
			const cause = { meta: { correlationId: rec.correlationId, sagaId: rec.id } } as any;
			await this.transaction(async trx => {
				const first = await this.table("saga_outcomes", trx)
					.insert({ saga_id: rec.id, type: rec.type, status: rec.status })
					.onConflict("saga_id")
					.ignore()
					.returning("saga_id");
				// A cancel-order saga announces itself through the order (order.cancelled).
				if (first.length === 0 || rec.type !== placeOrder.name) return;
				const d = rec.data;
				if (rec.status === "completed") {
					await this.record(trx, "checkout.completed", rec.id, { sagaId: rec.id, checkoutId: d.checkoutId, orderId: d.orderId, orderNumber: d.orderNumber, customerId: d.customerId, total: d.total, paymentId: d.paymentId }, cause);
				} else {
					await this.record(trx, "checkout.failed", rec.id, {
						sagaId: rec.id, checkoutId: d.checkoutId, orderId: d.orderId, customerId: d.customerId,
						reason: rec.failure?.message ?? rec.parkedReason ?? "unknown", type: rec.failure?.type ?? null, step: rec.failure?.step ?? null
					}, cause);
				}
			});
		}
	},

	channels: {
		// The cart's changes: the checkout session recomputes its totals.
		...sessionChannels,

		// The outcome of a payment that answered "pending" (BLIK, PayPal): the waiting step goes on or compensates.
		"payment.authorized": {
			handler(env: EventEnvelope<PaymentAuthorized>) {
				return this.deliver(env, env.payload?.orderId);
			}
		},
		"payment.failed": {
			handler(env: EventEnvelope<PaymentFailed>) {
				return this.deliver(env, env.payload?.orderId);
			}
		}
	},

	events: {
		// A checkout replica is gone: its sagas are taken over now, not when their leases expire.
		"$node.disconnected"(ctx: any) {
			const node = ctx.params?.node;
			// A stopping replica leaves the dead node's sagas to the replicas that stay.
			if (!node?.id || node.id === this.broker.nodeID || this.leaving) return;
			void this.engine
				?.takeOver(node.id)
				.then((n: number) => n > 0 && this.logger.info(`Took over ${n} saga(s) of node ${node.id}`))
				.catch((err: unknown) => this.logger.warn(`Taking over the sagas of node ${node.id} failed; recovery does it when their leases expire`, err));
		}
	},

	created() {
		this.placing = new Map();
	},

	async started() {
		if (settings.redisClusterNodes) {
			// Every script of one saga stays in one slot; the store shards its indexes over the cluster.
			this.redis = new Cluster(settings.redisClusterNodes, { redisOptions: { maxRetriesPerRequest: 3 } });
			this.store = new RedisSagaStore(this.redis, { prefix: settings.redisPrefix, retentionMs: settings.sagaRetentionMs });
		} else if (settings.redisUrl) {
			this.redis = new Redis(settings.redisUrl, { maxRetriesPerRequest: 3 });
			this.store = new RedisSagaStore(this.redis, { prefix: settings.redisPrefix, retentionMs: settings.sagaRetentionMs });
		} else {
			this.redis = null;
			this.store = memoryStore ??= new MemorySagaStore({ retentionMs: settings.sagaRetentionMs });
		}
		this.engine = new SagaEngine({
			store: this.store,
			definitions: [placeOrder, cancelOrder],
			// `<nodeID>:…`: on $node.disconnected the others know whose leases to free.
			owner: `${this.broker.nodeID}:${randomUUID().slice(0, 8)}`,
			leaseMs: settings.sagaLeaseMs,
			stepDelayMs: settings.sagaStepDelayMs,
			// A participant restarting must not cost the customer the order: steps outlast a restart.
			defaults: { retry: { attempts: settings.sagaStepAttempts, backoffMs: settings.sagaStepBackoffMs } },
			logger: this.logger,
			invoke: (action, params, opts) => this.broker.call(action, params, { meta: opts.meta, timeout: opts.timeout }),
			onFinished: rec => this.announce(rec as SagaRecord<PlaceOrderData>),
			listener: sagaMetrics(this.broker),
			crashPoint: settings.crashAt.size > 0 ? crashAt : undefined
		});
		// Sagas left behind by a replica that died are resumed now and then every few seconds.
		this.engine.startRecoveryLoop(settings.sagaRecoveryIntervalMs);
		// Sagas past their retention leave the operators' listing (their records expired already).
		const forget = () => {
			this.forgetTimer = setTimeout(() => {
				this.store
					.forgetExpired(Date.now())
					.then((n: number) => n > 0 && this.logger.info(`${n} finished saga(s) past their retention left the saga store`))
					.catch((err: Error) => this.logger.warn(`Forgetting expired sagas failed (the next pass tries again): ${err.message}`))
					.finally(() => this.forgetTimer && forget());
			}, Math.min(FORGET_EVERY_MS, Math.max(1000, settings.sagaRetentionMs)));
		};
		if (settings.sagaRetentionMs > 0) forget();
		// Orders, carts and payments whose saga the store lost are finished or compensated (one replica at a time).
		this.countReconciled = reconcilerMetrics(this.broker);
		this.reconcileTimer = null;
		if (settings.reconcileIntervalMs > 0) {
			const tick = () => {
				this.reconcileTimer = setTimeout(() => {
					this.reconcile()
						.catch((err: unknown) => this.logger.warn(`Reconciler pass failed (the next one tries again): ${(err as Error).message}`))
						.finally(() => this.reconcileTimer && tick());
				}, settings.reconcileIntervalMs);
			};
			tick();
		}
	},

	async stopped() {
		this.leaving = true;
		if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
		this.reconcileTimer = null;
		if (this.forgetTimer) clearTimeout(this.forgetTimer);
		this.forgetTimer = null;
		await this.engine?.stop();
		if (this.redis) this.redis.disconnect();
	}
});

/** Still running, and not waiting for an outside answer. */
function isUnderWay(rec: SagaRecord): boolean {
	return (rec.status === "running" && rec.stepStatus !== "waiting") || rec.status === "compensating";
}

/** A saga record as operators see it: the payment token stays inside. */
function redact(rec: SagaRecord<any>) {
	const { paymentToken: _token, blikCode: _code, ...data } = rec.data ?? {};
	return { ...rec, data };
}
