/**
 * The dead-letter queue as operators see it. A channel consumer that failed every retry moves
 * the message to `<NAMESPACE>.DEAD_LETTER` (one queue per namespace), with headers naming
 * where it came from (`x-original-queue`, or `x-original-group` + `x-original-channel`) and,
 * with our channels adapter, why (`x-error-*`).
 *
 * Listing takes every message with `basic.get` and gives it back (nack + requeue): nothing is
 * consumed. Replaying publishes a copy straight to its original queue (only the consumer that
 * failed sees it again; the others handled it already), persistent and confirmed, and only
 * then acks the dead letter. The consumer's inbox drops a message it already handled, so a
 * replay repeated by mistake changes nothing.
 */
import amqp, { ConfirmChannel, GetMessage } from "amqplib";

export interface DeadLetter {
	/** The event's id (the envelope's `event_id`), what `replay` selects by. */
	id: string;
	/** The queue the message failed in (`<service>.<NAMESPACE>.<event>`). */
	queue: string;
	event: string | null;
	aggregateId: string | null;
	correlationId: string | null;
	attempts: number | null;
	error: { name?: string; message?: string; code?: string; type?: string; at?: string } | null;
}

export interface DeadLetterSummary {
	/** The dead-letter queue itself, or null without RabbitMQ (embedded mode: nothing is dead-lettered). */
	deadLetterQueue: string | null;
	total: number;
	/** Count per original queue. */
	queues: Record<string, number>;
	rows: DeadLetter[];
}

const RESET_HEADERS = ["x-redelivered-count", "x-error-name", "x-error-message", "x-error-code", "x-error-type", "x-error-timestamp", "x-death"];
/** Looked at per request, at most. */
const MAX_MESSAGES = 5000;

export function deadLetterQueueName(namespace: string): string {
	return namespace ? `${namespace}.DEAD_LETTER` : "DEAD_LETTER";
}

const str = (v: unknown): string | undefined => (v === undefined || v === null || v === "" ? undefined : Buffer.isBuffer(v) ? v.toString() : String(v));

export function describe(msg: GetMessage): DeadLetter {
	const h: Record<string, unknown> = msg.properties.headers ?? {};
	let env: any = null;
	try {
		env = JSON.parse(msg.content.toString());
	} catch {
		env = null;
	}
	const queue = str(h["x-original-queue"]) ?? `${str(h["x-original-group"]) ?? "?"}.${str(h["x-original-channel"]) ?? "?"}`;
	const error = str(h["x-error-message"]) !== undefined
		? { name: str(h["x-error-name"]), message: str(h["x-error-message"]), code: str(h["x-error-code"]), type: str(h["x-error-type"]), at: str(h["x-error-timestamp"]) }
		: null;
	return {
		id: str(env?.event_id) ?? str(msg.properties.messageId) ?? `${queue}#${msg.fields.deliveryTag}`,
		queue,
		event: str(env?.event_name) ?? str(h["x-original-channel"]) ?? null,
		aggregateId: str(env?.aggregate_id) ?? null,
		correlationId: str(env?.correlation_id) ?? str(msg.properties.correlationId) ?? null,
		attempts: h["x-redelivered-count"] !== undefined ? Number(h["x-redelivered-count"]) : null,
		error
	};
}

export class DeadLetters {
	private connection: amqp.ChannelModel | null = null;

	constructor(private url: string, readonly queue: string) {}

	private async channel(): Promise<ConfirmChannel> {
		if (!this.connection) {
			const c = await amqp.connect(this.url, { noDelay: true });
			c.on("error", () => undefined);
			c.on("close", () => {
				if (this.connection === c) this.connection = null;
			});
			this.connection = c;
		}
		const ch = await this.connection.createConfirmChannel();
		ch.on("error", () => undefined);
		return ch;
	}

	/** Messages waiting in the dead-letter queue (0 when no consumer ever declared it). */
	async depth(): Promise<number> {
		const ch = await this.channel();
		try {
			return (await ch.checkQueue(this.queue)).messageCount;
		} catch {
			return 0; // 404: the channel closed itself; nothing was dead-lettered yet
		} finally {
			await ch.close().catch(() => undefined);
		}
	}

	/** Takes every message (up to MAX_MESSAGES) and hands each to `decide`; a message it does not claim goes back. */
	private async sweep(decide: (msg: GetMessage, ch: ConfirmChannel) => Promise<boolean>): Promise<void> {
		const ch = await this.channel();
		const held: GetMessage[] = [];
		try {
			try {
				await ch.checkQueue(this.queue);
			} catch {
				return;
			}
			for (let i = 0; i < MAX_MESSAGES; i++) {
				const msg = await ch.get(this.queue, { noAck: false });
				if (!msg) break;
				if (await decide(msg, ch)) ch.ack(msg);
				else held.push(msg);
			}
		} finally {
			for (const msg of held) ch.nack(msg, false, true);
			await ch.close().catch(() => undefined);
		}
	}

	async list(filter: { queue?: string } = {}): Promise<DeadLetterSummary> {
		const rows: DeadLetter[] = [];
		await this.sweep(async msg => {
			const d = describe(msg);
			if (!filter.queue || d.queue === filter.queue) rows.push(d);
			return false;
		});
		const queues: Record<string, number> = {};
		for (const r of rows) queues[r.queue] = (queues[r.queue] ?? 0) + 1;
		return { deadLetterQueue: this.queue, total: rows.length, queues, rows };
	}

	/** Sends the chosen dead letters back to their queues; answers what went where. */
	async replay(filter: { queue?: string; ids?: string[] }): Promise<{ replayed: DeadLetter[]; remaining: number }> {
		const replayed: DeadLetter[] = [];
		let remaining = 0;
		await this.sweep(async (msg, ch) => {
			const d = describe(msg);
			const chosen = (!filter.queue || d.queue === filter.queue) && (!filter.ids || filter.ids.includes(d.id));
			if (!chosen) {
				remaining++;
				return false;
			}
			const headers = { ...(msg.properties.headers ?? {}) };
			for (const h of RESET_HEADERS) delete headers[h];
			headers["x-replayed-at"] = new Date().toISOString();
			await new Promise<void>((resolve, reject) =>
				ch.publish("", d.queue, msg.content, {
					persistent: true, headers, messageId: msg.properties.messageId, correlationId: msg.properties.correlationId,
					contentType: msg.properties.contentType, type: msg.properties.type, timestamp: msg.properties.timestamp
				}, err => (err ? reject(err) : resolve()))
			);
			replayed.push(d);
			return true;
		});
		return { replayed, remaining };
	}

	async close(): Promise<void> {
		const c = this.connection;
		this.connection = null;
		await c?.close().catch(() => undefined);
	}
}
