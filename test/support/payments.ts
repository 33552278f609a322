/**
 * What tests of payments need around the gateway: its address (the simulated provider's
 * webhooks are pointed at it), signed webhooks as a provider sends them, and an outside
 * system's plain amqplib consumer of the integration exchange.
 */
import amqp from "amqplib";
import type { AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";
import jwt from "jsonwebtoken";
import { signWebhook } from "../../contracts/webhook";
import { settings } from "../../infra/settings";
import type { PaymentProvider } from "../../services/payments/provider";
import type { Cluster } from "./cluster";
import { eventually } from "./cluster";
import { Http, HttpAnswer } from "./http";

/** The gateway of a cluster (PORT=0: its port is known only once it listens); the simulated provider's webhooks go to it. */
export function gatewayOf(cluster: Cluster): Http {
	const broker = cluster.brokers.find(b => b.getLocalService("api"));
	if (!broker) throw new Error("no gateway in this cluster");
	const api: any = broker.getLocalService("api");
	const url = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`;
	settings.webhookTargetUrl = url;
	return new Http(url);
}

/** A bearer token as the customers service issues it (same secret), without going through registration. */
export function tokenFor(user: { id: string; role: "customer" | "admin"; email?: string }): string {
	return jwt.sign({ role: user.role, email: user.email ?? `${user.id.slice(0, 8)}@example.com` }, process.env.JWT_SECRET!, { algorithm: "HS256", subject: user.id, expiresIn: "1h" });
}

/** Posts a provider webhook; `signature` overrides the correct one (null sends none). */
export function postWebhook(http: Http, body: Record<string, unknown>, opts: { signature?: string | null; provider?: string; raw?: string } = {}): Promise<HttpAnswer> {
	const raw = opts.raw ?? JSON.stringify(body);
	const headers: Record<string, string> = {};
	const signature = opts.signature === undefined ? signWebhook(raw, process.env.WEBHOOK_SECRET!) : opts.signature;
	if (signature !== null) headers["x-signature"] = signature;
	return http.request("POST", `/api/payments/webhooks/${opts.provider ?? "simulated"}`, { raw, headers });
}

export const webhookBody = (transactionId: string, status: "approved" | "rejected", eventId = randomUUID()) => ({ eventId, transactionId, status });

export interface ReceivedIntegration {
	routingKey: string;
	body: any;
	properties: amqp.MessageProperties;
}

/** An outside system: its own queue bound to the integration exchange, every message kept. */
export async function integrationConsumer(bindings: string[] = ["#"]) {
	const connection = await amqp.connect(process.env.TRANSPORTER!);
	const channel = await connection.createChannel();
	await channel.assertExchange(settings.integrationExchange, "topic", { durable: true });
	const queue = `${process.env.TEST_RUN_ID}.outside-system.${randomUUID().slice(0, 8)}`;
	await channel.assertQueue(queue, { exclusive: true, autoDelete: true });
	for (const key of bindings) await channel.bindQueue(queue, settings.integrationExchange, key);
	const received: ReceivedIntegration[] = [];
	await channel.consume(queue, msg => {
		if (!msg) return;
		received.push({ routingKey: msg.fields.routingKey, body: JSON.parse(msg.content.toString("utf8")), properties: msg.properties });
		channel.ack(msg);
	});
	return {
		received,
		waitFor(routingKey: string, predicate: (body: any) => boolean = () => true, timeoutMs = 15_000) {
			return eventually(() => received.find(m => m.routingKey === routingKey && predicate(m.body)), timeoutMs, `integration event ${routingKey}`);
		},
		of(routingKey: string, predicate: (body: any) => boolean = () => true) {
			return received.filter(m => m.routingKey === routingKey && predicate(m.body));
		},
		async close() {
			await channel.close().catch(() => undefined);
			await connection.close().catch(() => undefined);
		}
	};
}

/** Counts the provider's calls; `failNext` makes the next call of one kind fail as an outage. */
export class CountingProvider implements PaymentProvider {
	calls: Record<string, number> = { authorize: 0, void: 0, capture: 0, refund: 0, startBlik: 0, startPayPal: 0, cancel: 0 };
	failNext: string | null = null;
	constructor(private inner: PaymentProvider) {}
	private outage(kind: string) {
		this.calls[kind] = (this.calls[kind] ?? 0) + 1;
		if (this.failNext !== kind) return null;
		this.failNext = null;
		return { ok: false as const, type: "PROVIDER_UNAVAILABLE" as const, message: "The provider timed out" };
	}
	async authorize(...a: Parameters<PaymentProvider["authorize"]>) {
		return this.outage("authorize") ?? this.inner.authorize(...a);
	}
	async void(ref: string) {
		return this.outage("void") ?? this.inner.void(ref);
	}
	async capture(...a: Parameters<PaymentProvider["capture"]>) {
		return this.outage("capture") ?? this.inner.capture(...a);
	}
	async refund(...a: Parameters<PaymentProvider["refund"]>) {
		return this.outage("refund") ?? this.inner.refund(...a);
	}
	async startBlik(...a: Parameters<PaymentProvider["startBlik"]>) {
		return this.outage("startBlik") ?? this.inner.startBlik(...a);
	}
	async startPayPal(...a: Parameters<PaymentProvider["startPayPal"]>) {
		return this.outage("startPayPal") ?? this.inner.startPayPal(...a);
	}
	async cancel(ref: string) {
		return this.outage("cancel") ?? this.inner.cancel(ref);
	}
	close() {
		this.inner.close();
	}
}

