/**
 * Integration events: the facts outside systems (email, analytics, fulfilment, CRM,
 * monitoring) subscribe to. They are published to a RabbitMQ topic exchange (`integration`
 * by default) with the routing key `<name>.v<version>`, persistent JSON, through the owning
 * service's outbox in the same transaction as the domain event. Their payloads are a public
 * contract: fields are added, never renamed or removed, without a new version.
 */
import { randomUUID } from "node:crypto";
import type { Money } from "./money";

export interface IntegrationPayloads {
	OrderPlacedNotification: { orderId: string; orderNumber: string; customerId: string; totalAmount: Money; itemCount: number };
	OrderShippedNotification: { orderId: string; orderNumber: string; customerId: string; trackingNumber: string; carrier: string };
	OrderCancelledNotification: { orderId: string; orderNumber: string; customerId: string; reason: string; refundAmount: Money | null };
	LowStockNotification: { productId: string; productName: string | null; sku: string; currentStock: number; threshold: number };
	OutOfStockNotification: { productId: string; productName: string | null; sku: string };
	CustomerRegisteredNotification: { customerId: string; email: string; firstName: string };
	PaymentFailedNotification: { orderId: string; customerId: string | null; paymentId: string; amount: Money; failureReason: string };
	RefundProcessedNotification: { orderId: string; customerId: string | null; paymentId: string; refundAmount: Money; refundId: string };
}

export type IntegrationName = keyof IntegrationPayloads;

export const INTEGRATION_NAMES: readonly IntegrationName[] = [
	"OrderPlacedNotification",
	"OrderShippedNotification",
	"OrderCancelledNotification",
	"LowStockNotification",
	"OutOfStockNotification",
	"CustomerRegisteredNotification",
	"PaymentFailedNotification",
	"RefundProcessedNotification"
];

/** What an outside consumer receives: the envelope and the payload. */
export interface IntegrationEnvelope<N extends IntegrationName = IntegrationName> {
	eventId: string;
	eventType: N;
	version: number;
	occurredAt: string;
	correlationId: string | null;
	/** The domain event (or request) this notification comes from. */
	causationId: string | null;
	source: string;
	payload: IntegrationPayloads[N];
}

export function routingKey(name: IntegrationName | string, version = 1): string {
	return `${name}.v${version}`;
}

export function integrationEnvelope<N extends IntegrationName>(
	name: N,
	payload: IntegrationPayloads[N],
	opts: { source: string; correlationId?: string | null; causationId?: string | null; version?: number }
): IntegrationEnvelope<N> {
	return {
		eventId: randomUUID(),
		eventType: name,
		version: opts.version ?? 1,
		occurredAt: new Date().toISOString(),
		correlationId: opts.correlationId ?? null,
		causationId: opts.causationId ?? null,
		source: opts.source,
		payload
	};
}
