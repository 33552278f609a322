/**
 * Whether this process can use RabbitMQ right now, per connection it relies on:
 * - `transporter`: Moleculer's connection and working channel (calls, responses, discovery);
 * - `channels`: the @moleculer/channels connection and consuming channel (domain events in);
 * - `publisher`: the outbox relay's confirm channel (domain events out) — tried now, so a
 *   publisher that lost its connection and has had nothing to send yet still answers truly.
 * Each is "up", "down", or "none" (not used in this process / embedded mode).
 *
 * Every service answers it as the action `<service>.health` (infra/service.ts); a gateway's
 * readiness calls `messagingHealth(this.broker)` for its own process.
 */
import type { ServiceBroker } from "moleculer";
import { publisherOf } from "./amqp-publisher";

export type LinkState = "up" | "down" | "none";

/**
 * The process is on its way out: it stopped taking requests from the shared queues (the first
 * thing a stop does, bin/broker.ts) or Moleculer marked the broker `stopping`.
 */
export function isStopping(broker: ServiceBroker): boolean {
	return broker.stopping || (broker as any).transit?.tx?.takingRequests === false;
}

export interface MessagingHealth {
	status: "up" | "down";
	nodeID: string;
	transporter: LinkState;
	channels: LinkState;
	publisher: LinkState;
}

function within<T>(p: Promise<T>, ms: number): Promise<T> {
	return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error("timeout")), ms).unref())]);
}

export async function messagingHealth(broker: ServiceBroker, opts: { timeoutMs?: number } = {}): Promise<MessagingHealth> {
	const tx: any = (broker as any).transit?.tx;
	const transporter: LinkState = !tx ? "none" : typeof tx.usable === "function" ? (tx.usable() ? "up" : "down") : tx.connected ? "up" : "down";
	const adapter: any = (broker as any).channelAdapter;
	const channels: LinkState = adapter && typeof adapter.usable === "function" ? (adapter.usable() ? "up" : "down") : "none";
	const pub = publisherOf(broker as any);
	let publisher: LinkState = "none";
	if (pub) publisher = await within(pub.connect(), opts.timeoutMs ?? 1500).then(() => "up" as const, () => "down" as const);
	const status = [transporter, channels, publisher].includes("down") ? "down" : "up";
	return { status, nodeID: broker.nodeID, transporter, channels, publisher };
}
