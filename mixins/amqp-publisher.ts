/**
 * One confirm channel per process, used by every outbox relay in it. It publishes to the
 * fanout exchange that @moleculer/channels consumes (`<namespace>.<event name>`), and a
 * publish resolves only once RabbitMQ has confirmed it. A lost connection is reopened on
 * the next publish.
 */
import amqp from "amqplib";
import type { EventEnvelope } from "../contracts/events";
import { IntegrationEnvelope, routingKey } from "../contracts/integration";

export class AmqpPublisher {
	private connection: amqp.ChannelModel | null = null;
	private channel: amqp.ConfirmChannel | null = null;
	private connecting: Promise<amqp.ConfirmChannel> | null = null;
	private asserted = new Set<string>();

	constructor(
		private url: string,
		private prefix: string
	) {}

	exchangeFor(eventName: string): string {
		return this.prefix ? `${this.prefix}.${eventName}` : eventName;
	}

	private async open(): Promise<amqp.ConfirmChannel> {
		if (this.channel) return this.channel;
		if (!this.connecting) {
			this.connecting = (async () => {
				const connection = await amqp.connect(this.url, { noDelay: true });
				connection.on("error", () => undefined);
				connection.on("close", () => this.reset());
				const channel = await connection.createConfirmChannel();
				channel.on("error", () => undefined);
				channel.on("close", () => this.reset());
				this.connection = connection;
				this.channel = channel;
				return channel;
			})().finally(() => (this.connecting = null));
		}
		return this.connecting;
	}

	private reset() {
		this.channel = null;
		this.connection = null;
		this.asserted.clear();
	}

	/** Publishes every envelope and waits for the broker to confirm all of them. */
	async publish(envelopes: EventEnvelope[]): Promise<void> {
		const channel = await this.open();
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
			this.reset();
			throw err;
		}
	}

	/**
	 * Publishes integration events to the topic exchange `exchange` (routing key
	 * `<name>.v<version>`), persistent, and waits for the broker to confirm all of them.
	 */
	async publishIntegration(envelopes: IntegrationEnvelope[], exchange: string): Promise<void> {
		const channel = await this.open();
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
			this.reset();
			throw err;
		}
	}

	async close(): Promise<void> {
		const c = this.connection;
		this.reset();
		if (c) await c.close().catch(() => undefined);
	}
}

let shared: { publisher: AmqpPublisher; refs: number } | null = null;

export function acquirePublisher(url: string, prefix: string): AmqpPublisher {
	if (!shared) shared = { publisher: new AmqpPublisher(url, prefix), refs: 0 };
	shared.refs++;
	return shared.publisher;
}

export async function releasePublisher(): Promise<void> {
	if (!shared) return;
	if (--shared.refs <= 0) {
		const p = shared.publisher;
		shared = null;
		await p.close();
	}
}
