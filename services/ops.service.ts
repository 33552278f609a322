/**
 * ops — what an on-call operator asks the running system, shared by the REPL (bin/repl.ts)
 * and the admin routes:
 *
 * - `ops.order`: where is this order and why — its status and history, its sagas and their
 *   current step, the payment, the stock it holds, the newest events of it or of its
 *   correlation id from every service's outbox;
 * - `ops.deadLetters` / `ops.replayDeadLetters`: messages that failed every retry, per
 *   queue with their error, sent back to their queue once the fault is fixed;
 * - `ops.metrics`: the whole cluster's metrics in Prometheus format (`GET /metrics`), gathered
 *   from every node; this service also keeps the `dead_letters_depth` gauge.
 *
 * It owns no table: it asks the services that own the data.
 */
import Joi from "joi";
import { notFound } from "../contracts/errors";
import { Ctx, defineService, ServiceThis } from "../infra/service";
import { settings } from "../infra/settings";
import { SERVICE_NAMES } from "./index";
import { DeadLetters, deadLetterQueueName } from "./ops/dead-letters";
import { NodeMetric, renderPrometheus } from "./ops/prometheus";

const DLQ_DEPTH = "dead_letters.depth";
const DLQ_EVERY_MS = 10_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface Vars {
	deadLetters: DeadLetters | null;
	depthTimer: NodeJS.Timeout | null;
}

interface Methods {
	measureDepth(): Promise<void>;
	quiet<T>(p: Promise<T>): Promise<T | null>;
}

type This = ServiceThis<Methods, Vars>;

export default defineService<Methods, Vars>({
	name: "ops",

	actions: {
		order: {
			params: Joi.object({ order: Joi.string().trim().max(100).required() }),
			async handler(ctx: Ctx) {
				const ref: string = ctx.params.order;
				const orderId = UUID.test(ref) ? ref : (await ctx.call<{ orderId: string }, any>("orders.idOfNumber", { orderNumber: ref })).orderId;
				const order: any = await this.quiet(ctx.call("orders.get", { id: orderId }));
				if (!order) throw notFound("Order", ref);
				const [sagas, payments, reservation] = await Promise.all([
					ctx.call<any[], any>("checkout.sagasOfOrder", { orderId }).catch(() => []),
					this.quiet(ctx.call<any[], any>("payments.list", { orderId })),
					this.quiet(ctx.call<any[], any>("inventory.reservationOf", { orderId }))
				]);
				const correlationIds = [...new Set(sagas.map((s: any) => s.correlationId).filter(Boolean))] as string[];
				// Every service with an outbox answers `<service>.outboxEvents`.
				const withOutbox = SERVICE_NAMES.filter(name => this.broker.registry.actions.isAvailable(`${name}.outboxEvents`));
				const found = await Promise.all(
					withOutbox.flatMap(name => [
						this.quiet(ctx.call<any[], any>(`${name}.outboxEvents`, { aggregateId: orderId, limit: 20 })),
						...correlationIds.map(c => this.quiet(ctx.call<any[], any>(`${name}.outboxEvents`, { correlationId: c, limit: 20 })))
					])
				);
				const seen = new Set<string>();
				const events = found
					.flat()
					.filter((e: any) => e && !seen.has(e.eventId) && seen.add(e.eventId))
					.sort((a: any, b: any) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0))
					.slice(0, 20);
				const place = sagas.find((s: any) => s.type === "place-order") ?? sagas[0] ?? null;
				return {
					order: { id: order.id, orderNumber: order.orderNumber, status: order.status, customerId: order.customerId, total: order.total, createdAt: order.createdAt, statusHistory: order.statusHistory, shipment: order.shipment, cancellation: order.cancellation },
					correlationId: place?.correlationId ?? null,
					sagas: sagas.map((s: any) => ({
						id: s.id, type: s.type, status: s.status, state: s.state, stepStatus: s.stepStatus, attempts: s.attempts,
						failure: s.failure ?? null, parkedReason: s.parkedReason ?? null, waitingFor: s.wait?.events ?? null, updatedAt: s.updatedAt
					})),
					payment: payments && payments.length ? payments[payments.length - 1] : null,
					payments: payments ?? [],
					reservation: reservation ?? [],
					events
				};
			}
		},

		deadLetters: {
			params: Joi.object({ queue: Joi.string().max(255) }),
			async handler(ctx: Ctx) {
				if (!this.deadLetters) return { deadLetterQueue: null, total: 0, queues: {}, rows: [] };
				const res = await this.deadLetters.list({ queue: ctx.params.queue });
				this.broker.metrics.set(DLQ_DEPTH, res.total, { queue: this.deadLetters.queue });
				return res;
			}
		},

		replayDeadLetters: {
			params: Joi.object({ queue: Joi.string().max(255), ids: Joi.array().items(Joi.string().max(200)).min(1).max(1000) }),
			async handler(ctx: Ctx) {
				if (!this.deadLetters) return { replayed: [], remaining: 0 };
				const res = await this.deadLetters.replay({ queue: ctx.params.queue, ids: ctx.params.ids });
				this.logger.info(`Replayed ${res.replayed.length} dead letter(s)`, { correlationId: ctx.meta.correlationId, queue: ctx.params.queue ?? null });
				void this.measureDepth();
				return res;
			}
		},

		/** The metrics of every node of the cluster, in Prometheus text format. */
		metrics: {
			async handler(ctx: Ctx) {
				const nodes = this.broker.registry.nodes.list({ onlyAvailable: true, withServices: false }) as Array<{ id: string }>;
				const gathered = await Promise.all(
					nodes.map(async n => ({ nodeID: n.id, metrics: ((await this.quiet(ctx.call<NodeMetric[], any>("$node.metrics", {}, { nodeID: n.id, timeout: 5000 }))) ?? []) as NodeMetric[] }))
				);
				return renderPrometheus(gathered);
			}
		}
	},

	methods: {
		async measureDepth(this: This) {
			if (!this.deadLetters || !this.broker.metrics.isEnabled()) return;
			try {
				this.broker.metrics.set(DLQ_DEPTH, await this.deadLetters.depth(), { queue: this.deadLetters.queue });
			} catch (err) {
				this.logger.debug("Dead-letter depth unknown", (err as Error).message);
			}
		},
		/** The answer, or null when the call failed (a part of the picture that is missing). */
		quiet<T>(p: Promise<T>): Promise<T | null> {
			return p.catch(() => null);
		}
	},

	created() {
		if (this.broker.metrics.isEnabled() && !this.broker.metrics.getMetric(DLQ_DEPTH)) {
			this.broker.metrics.register({ type: "gauge", name: DLQ_DEPTH, labelNames: ["queue"], description: "Messages waiting in the dead-letter queue" });
		}
	},

	async started() {
		this.deadLetters = settings.transporter ? new DeadLetters(settings.transporter, deadLetterQueueName(settings.namespace)) : null;
		this.depthTimer = null;
		if (this.deadLetters) {
			const tick = () => {
				void this.measureDepth().finally(() => {
					if (this.deadLetters) this.depthTimer = setTimeout(tick, DLQ_EVERY_MS);
				});
			};
			this.depthTimer = setTimeout(tick, 1000);
		}
	},

	async stopped() {
		if (this.depthTimer) clearTimeout(this.depthTimer);
		const dl = this.deadLetters;
		this.deadLetters = null;
		await dl?.close();
	}
});
