/**
 * Transactional outbox. `this.record(trx, …)` writes an event in the same transaction as the
 * state change; once that commits, the process publishes it — through RabbitMQ with publisher
 * confirms when a transporter is configured, else through the in-process channels adapter —
 * and marks the row sent only after the broker took it. A broker outage leaves rows unsent
 * and the relay retries with backoff; rows claimed by a relay that died are taken over after
 * the claim expires. Requires the db mixin.
 *
 * Two ways out, one guarantee:
 * - at once: a row is written already claimed by its own process (`claimed_until`
 *   RECORD_CLAIM_SECONDS ahead), and when its transaction commits the process publishes the
 *   envelope it still holds. Commits that arrive while a batch is out go in the next one, so a
 *   busy process publishes many events per confirm. What was confirmed is marked sent
 *   MARK_SENT_DELAY_MS later, everything confirmed meanwhile in one statement (a commit of its
 *   own per batch was a sixth of the checkout's transactions); a crash in that moment leaves
 *   rows claimed, and the poller publishes them again once the claim lapses;
 * - by polling: every IDLE_POLL_MS a replica claims the rows nobody holds — those of a
 *   process that died before publishing, or whose publish failed — and publishes them.
 * Either way a row is marked sent only after RabbitMQ confirmed it; a crash in between
 * publishes it again (consumers deduplicate by event id).
 *
 * `recordIntegration` writes an integration event for outside systems the same way: its row
 * targets the integration topic exchange (routing key `<name>.v1`) instead of the channels.
 * Without RabbitMQ (embedded mode) those rows are logged and marked sent.
 */
import Joi from "joi";
import type { Knex } from "knex";
import type { ServiceSchema } from "moleculer";
import { envelope, EVENT_CONSUMERS, EventEnvelope, EventName } from "../contracts/events";
import { IntegrationEnvelope, integrationEnvelope, IntegrationName, IntegrationPayloads } from "../contracts/integration";
import { acquirePublisher, AmqpPublisher, publisherTarget, releasePublisher } from "../infra/amqp-publisher";
import { acquireKnex, releaseKnex } from "../infra/database";
import { heldOutboxRows, withHeldOutboxRows, type DbMethods, type Trx } from "./db.mixin";
import { settings } from "../infra/settings";
import type { Ctx } from "../infra/service";

/** Which kept events an erasure rewrites (every condition given must hold). */
export interface OutboxSelection {
	aggregateIds?: string[] | Knex.QueryBuilder;
	eventNames?: string[];
	/** Only events whose payload field has one of these values. */
	payloadIn?: { field: string; values: string[] };
	/**
	 * Only events already published or going out from memory right now (those still waiting for
	 * the poller go out as they are). A row's writer publishes the envelope it holds, not the
	 * row, and marks the row sent a moment later (MARK_SENT_DELAY_MS), so a row its writer still
	 * claims (`attempts` 0, `claimed_until` set) counts as published: an erasure or a spent token
	 * in that moment must not be left in the table. (Should the writer die before publishing,
	 * the poller sends that row as rewritten.)
	 */
	sentOnly?: boolean;
}

/** What to do to the selected events' payloads: drop fields, or overwrite fields they carry. */
export interface OutboxRedaction {
	remove?: string[];
	set?: Record<string, unknown>;
}

export interface OutboxMethods {
	/**
	 * GDPR erasure and spent secrets: rewrites the payloads of events kept in this service's
	 * outbox. Answers how many events were rewritten.
	 */
	redactOutbox(trx: Trx, which: OutboxSelection, redaction: OutboxRedaction): Promise<number>;
	/** Writes an event to the outbox inside `trx`; it is published after commit. */
	record(
		trx: Trx,
		name: EventName,
		aggregateId: string,
		payload: Record<string, unknown>,
		cause?: Ctx | EventEnvelope | null
	): Promise<EventEnvelope>;
	/** Writes an integration event (for outside systems) to the outbox inside `trx`. */
	recordIntegration<N extends IntegrationName>(
		trx: Trx,
		name: N,
		aggregateId: string,
		payload: IntegrationPayloads[N],
		cause?: Ctx | EventEnvelope | null
	): Promise<IntegrationEnvelope<N>>;
	/** Asks the relay to publish now (call after a commit). */
	flushOutbox(): void;
}

const BATCH = 200;
/** How long the poller's claim on a batch lasts (a poller that died meanwhile loses it then). */
const CLAIM_SECONDS = 30;
/** How long a row written by this process is left to it: after that, if still unsent, any replica's poller publishes it. */
const RECORD_CLAIM_SECONDS = 10;
const IDLE_POLL_MS = 1000;
/** How long to leave RabbitMQ alone after `failures` failed publishes in a row: 200 ms doubling, at most 10 s. */
const publishBackoffMs = (failures: number) => Math.min(10_000, 200 * 2 ** Math.min(failures, 6));
/** How long confirmed rows wait to be marked sent, so that one statement marks many. */
const MARK_SENT_DELAY_MS = 200;
/** How often the `outbox.backlog` gauge (unsent rows of this service) is refreshed. */
const BACKLOG_EVERY_MS = 5000;
const BACKLOG = "outbox.backlog";

/** A committed event waiting to be published: its row's event id, its envelope, where it goes. */
interface OutboxRow {
	eventId: string;
	envelope: any;
	target: string | null;
}

export function OutboxMixin(): Partial<ServiceSchema> {
	return {
		created(this: any) {
			// The relay holds the shared pool too, so that the db mixin's stop cannot close it under
			// the relay's last marks (mixins stop in an order of Moleculer's choosing).
			acquireKnex(settings);
			this.outbox = {
				timer: null, running: false, again: false, stopped: false, failures: 0, publisher: null as AmqpPublisher | null, backlogAt: 0,
				// Committed rows this process still holds, waiting to go out at once.
				queue: [] as OutboxRow[],
				sending: null as Promise<void> | null,
				// After a failed publish, commits leave their rows to the poller until then.
				atOnceAfter: 0,
				atOnceFailures: 0,
				/** Event ids RabbitMQ confirmed, to be marked sent together. */
				confirmed: [] as string[],
				markTimer: null as NodeJS.Timeout | null,
				/** Stopped and done: nothing more is marked. */
				closed: false,
				marking: null as Promise<void> | null
			};
			if (this.broker.metrics.isEnabled() && !this.broker.metrics.getMetric(BACKLOG)) {
				this.broker.metrics.register({ type: "gauge", name: BACKLOG, labelNames: ["service"], description: "Events written to a service's outbox and not yet published" });
			}
		},
		actions: {
			/**
			 * Operators: the newest events this service wrote (its outbox), of one aggregate or one
			 * correlation id — how `ops.order` shows what happened to an order across services.
			 */
			outboxEvents: {
				visibility: "public",
				params: Joi.object({ aggregateId: Joi.string().max(100), correlationId: Joi.string().max(100), limit: Joi.number().integer().min(1).max(100).default(20) }).or("aggregateId", "correlationId") as any,
				async handler(this: any, ctx: any) {
					const { aggregateId, correlationId, limit } = ctx.params;
					await this.schemaReady;
					const rows = await this.table("outbox")
						.where((q: Knex.QueryBuilder) => {
							if (aggregateId) q.orWhere({ aggregate_id: aggregateId });
							if (correlationId) q.orWhereRaw("envelope->>'correlation_id' = ?", [correlationId]);
						})
						.orderBy("id", "desc")
						.limit(limit)
						.select("event_id", "event_name", "aggregate_id", "envelope", "created_at", "sent_at");
					return rows.map((r: any) => {
						const env = typeof r.envelope === "string" ? JSON.parse(r.envelope) : r.envelope;
						return { service: this.name, eventId: r.event_id, event: r.event_name, aggregateId: r.aggregate_id, correlationId: env?.correlation_id ?? env?.correlationId ?? null, at: new Date(r.created_at).toISOString(), sent: r.sent_at !== null };
					});
				}
			}
		},
		async started(this: any) {
			// The RabbitMQ of this broker's own transporter (null in the embedded mode).
			const target = publisherTarget(this.broker);
			if (target) {
				this.outbox.publisher = acquirePublisher(target.url, target.prefix, EVENT_CONSUMERS);
				// Declares every consumer's queue now, so nothing published before a consumer starts is dropped.
				// RabbitMQ down at start-up is no reason to fail: the first publish connects and declares again.
				this.outbox.publisher.connect().catch((err: Error) => this.logger.warn(`RabbitMQ not reachable at start-up (${err.message}); the relay retries.`));
			}
			// The db mixin's migrations may still be running: the relay starts once the schema is there.
			this.schemaReady.then(() => this.flushOutbox());
		},
		async stopped(this: any) {
			this.outbox.stopped = true;
			if (this.outbox.timer) clearTimeout(this.outbox.timer);
			while (this.outbox.running) await new Promise(r => setTimeout(r, 10));
			// What committed last goes out now; if it cannot, its claim lapses and another replica's poller sends it.
			if (this.outbox.sending) await this.outbox.sending.catch(() => undefined);
			await this.sendCommitted().catch(() => undefined);
			await this.markConfirmed();
			// From here on the service's database pool may close: a commit that still lands leaves its
			// row claimed, and a replica's poller publishes it again once the claim lapses.
			this.outbox.closed = true;
			if (this.outbox.publisher) await releasePublisher(this.outbox.publisher);
			await releaseKnex(settings);
		},
		methods: {
			async redactOutbox(this: DbMethods, trx: Trx, which: OutboxSelection, redaction: OutboxRedaction) {
				// Rows this transaction recorded and still holds are rewritten too.
				await withHeldOutboxRows(this, trx);
				const fieldName = /^[A-Za-z][A-Za-z0-9_]{0,62}$/;
				const fields = [...(redaction.remove ?? []), ...Object.keys(redaction.set ?? {}), ...(which.payloadIn ? [which.payloadIn.field] : [])];
				const bad = fields.find(f => !fieldName.test(f));
				if (bad) throw new Error(`Not a payload field name: ${bad}`);
				const where = (q: Knex.QueryBuilder) => {
					if (which.aggregateIds) q.whereIn("aggregate_id", which.aggregateIds as any);
					if (which.eventNames) q.whereIn("event_name", which.eventNames);
					if (which.payloadIn) q.whereRaw("envelope->'payload'->>? = ANY(?)", [which.payloadIn.field, which.payloadIn.values]);
					if (which.sentOnly) q.where(w => w.whereNotNull("sent_at").orWhere(c => c.where("attempts", 0).whereNotNull("claimed_until")));
					return q;
				};
				let n = 0;
				if (redaction.remove?.length) {
					n = await where(this.table("outbox", trx)).update({ envelope: this.knex.raw(`jsonb_set(envelope, '{payload}', (envelope->'payload') - ?::text[])`, [redaction.remove]) });
				}
				for (const [field, value] of Object.entries(redaction.set ?? {})) {
					// Only payloads that carry the field: nothing is added to the others.
					const changed = await where(this.table("outbox", trx))
						.whereRaw("jsonb_exists(envelope->'payload', ?)", [field])
						.update({ envelope: this.knex.raw(`jsonb_set(envelope, ?::text[], ?::jsonb)`, [["payload", field], JSON.stringify(value ?? null)]) });
					n = Math.max(n, changed);
				}
				return n;
			},
			async record(this: DbMethods, trx: Trx, name: EventName, aggregateId: string, payload: Record<string, unknown>, cause?: any) {
				const correlationId = cause?.meta?.correlationId ?? cause?.correlation_id ?? null;
				const causationId = cause?.event_id ?? cause?.meta?.sagaId ?? cause?.id ?? null;
				const env = envelope(name, aggregateId, payload, { correlationId, causationId });
				await (this as any).keep(trx, { event_id: env.event_id, event_name: name, aggregate_id: aggregateId, envelope: JSON.stringify(env) }, env, null);
				return env;
			},
			async recordIntegration(this: any, trx: Trx, name: IntegrationName, aggregateId: string, payload: any, cause?: any) {
				const env = integrationEnvelope(name, payload, {
					source: this.name,
					correlationId: cause?.meta?.correlationId ?? cause?.correlation_id ?? null,
					causationId: cause?.event_id ?? cause?.meta?.sagaId ?? cause?.id ?? null
				});
				await this.keep(trx, { event_id: env.eventId, event_name: name, aggregate_id: aggregateId, envelope: JSON.stringify(env), target: "integration" }, env, "integration");
				return env;
			},
			/** Writes the row claimed by this process; once `trx` commits, the envelope goes out at once. */
			async keep(this: any, trx: Trx, row: Record<string, unknown>, env: any, target: string | null) {
				const claimed = { ...row, target, claimed_until: this.knex.raw(`now() + interval '${RECORD_CLAIM_SECONDS} seconds'`) };
				// A transaction of the db mixin writes it with its last statement; any other, now.
				const held = heldOutboxRows(trx);
				if (held) held.push(claimed);
				else await this.table("outbox", trx).insert(claimed);
				let outer: any = trx;
				while (outer.parentTransaction) outer = outer.parentTransaction;
				outer.executionPromise?.then(() => this.sendAtOnce({ eventId: row.event_id as string, envelope: env, target })).catch(() => undefined);
			},
			/** A committed row: queued, and sent with whatever else committed meanwhile. */
			sendAtOnce(this: any, row: OutboxRow) {
				this.outbox.queue.push(row);
				this.kickSending();
			},
			/** One sender at a time; rows queued while it finished get one of their own. */
			kickSending(this: any) {
				const ob = this.outbox;
				if (ob.sending) return;
				ob.sending = this.sendCommitted().finally(() => {
					ob.sending = null;
					if (ob.queue.length > 0 && !ob.stopped) this.kickSending();
				});
			},
			/** Publishes the queued rows, a batch per confirm; what was confirmed is marked sent a moment later (markConfirmed). */
			async sendCommitted(this: any) {
				const ob = this.outbox;
				// The in-process adapter drops what is published before the consumers subscribed (embedded mode).
				while (!this.broker.started && !ob.stopped) await new Promise(r => setTimeout(r, 50));
				while (ob.queue.length > 0) {
					const batch: OutboxRow[] = ob.queue.splice(0, BATCH);
					const ids = batch.map(r => r.eventId);
					try {
						// Right after a failure the broker is not tried once per commit: the poller has these rows, with its backoff.
						if (Date.now() < ob.atOnceAfter) throw new Error("RabbitMQ failed a moment ago");
						await this.publishRows(batch);
						ob.atOnceFailures = 0;
					} catch (err: any) {
						if (Date.now() >= ob.atOnceAfter) {
							ob.atOnceAfter = Date.now() + publishBackoffMs(ob.atOnceFailures++);
							this.logger.warn(`Publishing ${batch.length} event(s) failed, the relay retries: ${err.message}`);
						}
						await this.table("outbox").whereIn("event_id", ids).update({ claimed_until: null }).catch(() => undefined);
						continue;
					}
					ob.confirmed.push(...ids);
					// Once the service stops, nothing waits: a mark left for later would meet a closed pool
					// (and a pool being closed waits for it, up to the acquire timeout).
					if (ob.stopped) await this.markConfirmed();
					else ob.markTimer ??= setTimeout(() => void this.markConfirmed(), MARK_SENT_DELAY_MS);
				}
			},
			/** Marks what RabbitMQ confirmed sent, in one statement (waits for a marking under way first). */
			async markConfirmed(this: any) {
				const ob = this.outbox;
				if (ob.markTimer) clearTimeout(ob.markTimer);
				ob.markTimer = null;
				while (ob.marking) await ob.marking;
				if (ob.closed) ob.confirmed.length = 0; // the pool may be closing (see stopped)
				if (ob.confirmed.length === 0) return;
				const ids: string[] = ob.confirmed.splice(0);
				// If this fails the rows stay claimed; when the claim lapses the poller publishes them again (deduplicated downstream).
				ob.marking = this.table("outbox").whereIn("event_id", ids).update({ sent_at: this.knex.fn.now(), claimed_until: null })
					.catch((err: Error) => this.logger.warn(`Marking ${ids.length} published event(s) sent failed; they will be published again: ${err.message}`))
					.finally(() => (ob.marking = null));
				await ob.marking;
			},
			/** Publishes rows to where they go (the channels' exchanges, or the integration exchange) and waits for the broker. */
			async publishRows(this: any, rows: OutboxRow[]) {
				const envelopes: EventEnvelope[] = rows.filter(r => r.target !== "integration").map(r => r.envelope);
				const integration: IntegrationEnvelope[] = rows.filter(r => r.target === "integration").map(r => r.envelope);
				if (this.outbox.publisher) {
					if (envelopes.length) await this.outbox.publisher.publish(envelopes);
					if (integration.length) await this.outbox.publisher.publishIntegration(integration, settings.integrationExchange);
				} else {
					for (const env of envelopes) await this.broker.sendToChannel(env.event_name, env);
					// No RabbitMQ: outside systems cannot be reached; the notification is only logged.
					for (const env of integration) this.logger.info(`Integration event ${env.eventType}.v${env.version} ${env.eventId} (no broker: logged only)`);
				}
			},
			flushOutbox(this: any) {
				const ob = this.outbox;
				if (ob.stopped) return;
				if (ob.running) {
					ob.again = true;
					return;
				}
				if (ob.timer) clearTimeout(ob.timer);
				ob.timer = null;
				// Channel consumers subscribe once the whole broker has started; the in-process
				// adapter would drop what is published before, so the relay waits for that.
				if (!this.broker.started) {
					ob.timer = setTimeout(() => this.flushOutbox(), 100);
					return;
				}
				ob.running = true;
				this.relayBatch()
					.then((n: number) => {
						ob.failures = 0;
						return n;
					})
					.catch((err: any) => {
						ob.failures++;
						this.logger.warn(`Outbox relay failed (attempt ${ob.failures}): ${err.message}`);
						return -1;
					})
					.then((n: number) => {
						ob.running = false;
						if (ob.stopped) return;
						if (n >= 0 && Date.now() - ob.backlogAt > BACKLOG_EVERY_MS) {
							ob.backlogAt = Date.now();
							this.measureBacklog().catch(() => undefined);
						}
						const full = n >= BATCH || ob.again;
						ob.again = false;
						const delay = n < 0 ? publishBackoffMs(ob.failures) : full ? 0 : IDLE_POLL_MS;
						ob.timer = setTimeout(() => this.flushOutbox(), delay);
					});
			},
			async measureBacklog(this: any) {
				if (!this.broker.metrics.isEnabled()) return;
				const [{ n }] = await this.table("outbox").whereNull("sent_at").count("* as n");
				this.broker.metrics.set(BACKLOG, Number(n), { service: this.name });
			},
			async relayBatch(this: any): Promise<number> {
				const schema = this.schemaName;
				const claimed = await this.knex.raw(
					`UPDATE ??.outbox SET claimed_until = now() + interval '${CLAIM_SECONDS} seconds', attempts = attempts + 1
					 WHERE id IN (SELECT id FROM ??.outbox WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
					              ORDER BY id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED)
					 RETURNING id, envelope, target`,
					[schema, schema]
				);
				const rows: Array<{ id: string; envelope: any; target: string | null }> = claimed.rows ?? claimed;
				if (rows.length === 0) return 0;
				rows.sort((a, b) => Number(a.id) - Number(b.id));
				const parse = (r: { envelope: any }) => (typeof r.envelope === "string" ? JSON.parse(r.envelope) : r.envelope);
				const ids = rows.map(r => r.id);
				try {
					await this.publishRows(rows.map(r => ({ eventId: "", envelope: parse(r), target: r.target })));
				} catch (err) {
					await this.table("outbox").whereIn("id", ids).update({ claimed_until: null });
					throw err;
				}
				await this.table("outbox").whereIn("id", ids).update({ sent_at: this.knex.fn.now(), claimed_until: null });
				return rows.length;
			}
		}
	};
}
