/**
 * One confirm channel per process, used by every outbox relay in it. It publishes to the
 * fanout exchange that @moleculer/channels consumes (`<namespace>.<event name>`), and a
 * publish resolves only once RabbitMQ has confirmed it. A lost connection is reopened on
 * the next publish (and the relay retries what failed).
 *
 * Before the first publish on every connection it declares the topology of the declared
 * consumers (contracts/events.ts `EVENT_CONSUMERS`): each event's exchange and each consuming
 * group's durable queue `<group>.<namespace>.<event>`, bound to it. So an event published
 * before its consumer ever started waits in that queue instead of being dropped by a fanout
 * exchange with nothing bound.
 *
 * Each connection's and channel's events only reset that same connection: a late `close`
 * from an older connection cannot drop a newer channel.
 */
import amqp from "amqplib";
import type { EventEnvelope } from "../contracts/events";
import { IntegrationEnvelope, routingKey } from "../contracts/integration";

interface Link {
	connection: amqp.ChannelModel;
	channel: amqp.ConfirmChannel;
}

export class AmqpPublisher {
	private link: Link | null = null;
	private connecting: Promise<Link> | null = null;
	private asserted = new Set<string>();

	constructor(
		private url: string,
		private prefix: string,
		private consumers: Readonly<Record<string, readonly string[]>> = {}
	) {}

	exchangeFor(eventName: string): string {
		return this.prefix ? `${this.prefix}.${eventName}` : eventName;
	}

	/** The queue a consumer group reads an event from (the name @moleculer/channels gives it). */
	queueFor(group: string, eventName: string): string {
		return `${group}.${this.exchangeFor(eventName)}`;
	}

	private async open(): Promise<Link> {
		if (this.link) return this.link;
		if (!this.connecting) {
			this.connecting = (async () => {
				const connection = await amqp.connect(this.url, { noDelay: true });
				connection.on("error", () => undefined);
				connection.on("close", () => this.reset(connection));
				try {
					const channel = await connection.createConfirmChannel();
					channel.on("error", () => undefined);
					channel.on("close", () => this.reset(connection));
					await this.declare(channel);
					const link = { connection, channel };
					this.link = link;
					return link;
				} catch (err) {
					await connection.close().catch(() => undefined);
					throw err;
				}
			})().finally(() => (this.connecting = null));
		}
		return this.connecting;
	}

	private async declare(channel: amqp.ConfirmChannel): Promise<void> {
		this.asserted.clear();
		for (const [eventName, groups] of Object.entries(this.consumers)) {
			const exchange = this.exchangeFor(eventName);
			await channel.assertExchange(exchange, "fanout", { durable: true });
			this.asserted.add(exchange);
			for (const group of groups) {
				const queue = this.queueFor(group, eventName);
				await channel.assertQueue(queue, { durable: true });
				await channel.bindQueue(queue, exchange, "");
			}
		}
	}

	/** Forgets `connection` (and closes it) if it is still the current one; anything older is ignored. */
	private reset(connection: amqp.ChannelModel) {
		if (this.link?.connection !== connection) return;
		this.link = null;
		connection.close().catch(() => undefined);
	}

	/** Connects now and declares the topology; rejects while RabbitMQ is unreachable. */
	async connect(): Promise<void> {
		await this.open();
	}

	/** True while the confirm channel is open. */
	usable(): boolean {
		return this.link !== null;
	}

	/** Publishes every envelope and waits for the broker to confirm all of them. */
	async publish(envelopes: EventEnvelope[]): Promise<void> {
		const { connection, channel } = await this.open();
		try {
			for (const env of envelopes) {
				const exchange = this.exchangeFor(env.event_name);
				if (!this.asserted.has(exchange)) {
					await channel.assertExchange(exchange, "fanout", { durable: true });
					this.asserted.add(exchange);
				}
				channel.publish(exchange, "", Buffer.from(JSON.stringify(env)), {
					persistent: true,
					messageId: env.event_id,
					correlationId: env.correlation_id ?? undefined,
					type: env.event_name,
					contentType: "application/json",
					timestamp: Math.floor(Date.parse(env.occurred_at) / 1000),
					headers: {}
				});
			}
			await channel.waitForConfirms();
		} catch (err) {
			this.reset(connection);
			throw err;
		}
	}

	/**
	 * Publishes integration events to the topic exchange `exchange` (routing key
	 * `<name>.v<version>`), persistent, and waits for the broker to confirm all of them.
	 */
	async publishIntegration(envelopes: IntegrationEnvelope[], exchange: string): Promise<void> {
		const { connection, channel } = await this.open();
		try {
			if (!this.asserted.has(`topic:${exchange}`)) {
				await channel.assertExchange(exchange, "topic", { durable: true });
				this.asserted.add(`topic:${exchange}`);
			}
			for (const env of envelopes) {
				channel.publish(exchange, routingKey(env.eventType, env.version), Buffer.from(JSON.stringify(env)), {
					persistent: true,
					messageId: env.eventId,
					correlationId: env.correlationId ?? undefined,
					type: routingKey(env.eventType, env.version),
					contentType: "application/json",
					timestamp: Math.floor(Date.parse(env.occurredAt) / 1000),
					appId: "saga-commerce"
				});
			}
			await channel.waitForConfirms();
		} catch (err) {
			this.reset(connection);
			throw err;
		}
	}

	async close(): Promise<void> {
		const link = this.link;
		this.link = null;
		if (link) await link.connection.close().catch(() => undefined);
	}
}

/** One publisher per RabbitMQ and namespace in a process, shared by every outbox relay in it. */
const shared = new Map<string, { publisher: AmqpPublisher; refs: number }>();

/**
 * Where the outbox of `broker` publishes: the RabbitMQ of its own transporter and its namespace
 * (so test brokers pointed at another node publish there too); null without an AMQP transporter.
 */
export function publisherTarget(broker: { namespace: string; transit?: any }): { url: string; prefix: string } | null {
	const urls = broker.transit?.tx?.opts?.url;
	const url = Array.isArray(urls) ? urls[0] : urls;
	return typeof url === "string" && /^amqps?:/.test(url) ? { url, prefix: broker.namespace } : null;
}

export function acquirePublisher(url: string, prefix: string, consumers: Readonly<Record<string, readonly string[]>> = {}): AmqpPublisher {
	const key = `${url}|${prefix}`;
	let entry = shared.get(key);
	if (!entry) shared.set(key, (entry = { publisher: new AmqpPublisher(url, prefix, consumers), refs: 0 }));
	entry.refs++;
	return entry.publisher;
}

/** The publisher the outbox relays of `broker` use, if any (for health checks). */
export function publisherOf(broker: { namespace: string; transit?: any }): AmqpPublisher | null {
	const target = publisherTarget(broker);
	return target ? (shared.get(`${target.url}|${target.prefix}`)?.publisher ?? null) : null;
}

export async function releasePublisher(publisher: AmqpPublisher): Promise<void> {
	for (const [key, entry] of shared) {
		if (entry.publisher !== publisher) continue;
		if (--entry.refs <= 0) {
			shared.delete(key);
			await publisher.close();
		}
	}
}
