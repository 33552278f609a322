/**
 * The AsyncAPI 3 document of the shop's messaging, generated from the event catalogue
 * (contracts/events.ts) and the consumers that the services declare (`<service>.describeChannels`):
 *
 * - every domain event is a fanout exchange named after it, which the emitting service's outbox
 *   relay publishes to, and one durable queue per consuming group, `<group>.<event>`;
 * - messages carry the envelope with the event's payload inside;
 * - integration events go to the topic exchange `integration`, routing key `<Name>.v<version>`,
 *   in their own envelope;
 * - a message that failed every retry lands in the `DEAD_LETTER` queue.
 *
 * With a NAMESPACE (several shops on one RabbitMQ), exchanges are `<namespace>.<event>` and
 * queues `<group>.<namespace>.<event>`.
 */
import parse from "joi-to-json";
import type { Schema as JoiSchema } from "joi";
import { EVENTS, EventName, envelopeSchema, INTEGRATION_EVENTS, INTEGRATION_EXCHANGE, integrationEnvelopeSchema, IntegrationEventName, integrationRoutingKey } from "../../contracts/events";

/** One consumer group on one event channel, as a service declares it. */
export interface ChannelConsumer {
	event: string;
	group: string;
}

const AMQP_BINDING = "0.3.0";

function jsonSchema(schema: JoiSchema): any {
	return parse(schema, "json");
}

/** The envelope's schema with one event's payload in it. */
function messagePayload(payload: JoiSchema, envelope: JoiSchema = envelopeSchema): any {
	const env = jsonSchema(envelope);
	env.properties.payload = jsonSchema(payload);
	return env;
}

/** Keys in an AsyncAPI document may hold letters, digits, `.`, `-` and `_`. */
function key(name: string): string {
	return name.replace(/[^A-Za-z0-9._-]/g, "_");
}

export function buildAsyncApi(opts: { version: string; consumers: ChannelConsumer[]; namespace?: string; server?: string; integrationExchange?: string }) {
	const ns = opts.namespace ?? "";
	const integrationExchange = opts.integrationExchange ?? INTEGRATION_EXCHANGE;
	const exchangeName = (event: string) => (ns ? `${ns}.${event}` : event);
	const queueName = (group: string, event: string) => `${group}.${exchangeName(event)}`;
	const deadLetter = ns ? `${ns}.DEAD_LETTER` : "DEAD_LETTER";

	const channels: Record<string, any> = {};
	const operations: Record<string, any> = {};
	const messages: Record<string, any> = {};

	const consumersOf = new Map<string, string[]>();
	for (const c of opts.consumers) {
		const groups = consumersOf.get(c.event) ?? [];
		if (!groups.includes(c.group)) groups.push(c.group);
		consumersOf.set(c.event, groups.sort());
	}

	for (const name of Object.keys(EVENTS).sort() as EventName[]) {
		const spec = EVENTS[name];
		const groups = consumersOf.get(name) ?? [];
		messages[key(name)] = {
			name,
			title: name,
			summary: spec.summary,
			contentType: "application/json",
			correlationId: { description: "The correlation id of the flow that caused the event", location: "$message.payload#/correlation_id" },
			payload: messagePayload(spec.payload),
			bindings: { amqp: { messageType: name, bindingVersion: AMQP_BINDING } },
			"x-emitted-by": spec.by,
			"x-consumed-by": groups
		};
		const messageRef = { $ref: `#/components/messages/${key(name)}` };
		const exchangeKey = key(`exchange.${name}`);
		channels[exchangeKey] = {
			address: exchangeName(name),
			title: `${name} (fanout exchange)`,
			description: `${spec.summary}. Published by ${spec.by}'s outbox relay with publisher confirms; consumed by ${groups.length ? groups.join(", ") : "no service yet"}.`,
			messages: { [key(name)]: messageRef },
			bindings: { amqp: { is: "routingKey", exchange: { name: exchangeName(name), type: "fanout", durable: true, autoDelete: false, vhost: "/" }, bindingVersion: AMQP_BINDING } }
		};
		operations[key(`${spec.by}.publish.${name}`)] = {
			action: "send",
			title: `${spec.by} publishes ${name}`,
			channel: { $ref: `#/channels/${exchangeKey}` },
			messages: [{ $ref: `#/channels/${exchangeKey}/messages/${key(name)}` }],
			bindings: { amqp: { deliveryMode: 2, mandatory: false, bindingVersion: AMQP_BINDING } }
		};
		for (const group of groups) {
			const queueKey = key(`queue.${group}.${name}`);
			channels[queueKey] = {
				address: queueName(group, name),
				title: `${group}.${name} (queue)`,
				description: `The ${group} group's durable queue on the ${name} exchange, balanced among its replicas; after 5 failed attempts a message moves to ${deadLetter}.`,
				messages: { [key(name)]: messageRef },
				bindings: { amqp: { is: "queue", queue: { name: queueName(group, name), durable: true, exclusive: false, autoDelete: false, vhost: "/" }, bindingVersion: AMQP_BINDING } }
			};
			operations[key(`${group}.consume.${name}`)] = {
				action: "receive",
				title: `${group} handles ${name}`,
				channel: { $ref: `#/channels/${queueKey}` },
				messages: [{ $ref: `#/channels/${queueKey}/messages/${key(name)}` }],
				bindings: { amqp: { ack: true, bindingVersion: AMQP_BINDING } }
			};
		}
	}

	channels.deadLetter = {
		address: deadLetter,
		title: "Dead letters (queue)",
		description: "Messages that failed every retry, with the error in their headers; an operator replays them to their queue.",
		messages: Object.fromEntries(Object.keys(EVENTS).sort().map(n => [key(n), { $ref: `#/components/messages/${key(n)}` }])),
		bindings: { amqp: { is: "queue", queue: { name: deadLetter, durable: true, exclusive: false, autoDelete: false, vhost: "/" }, bindingVersion: AMQP_BINDING } }
	};

	const integrationMessages: Record<string, any> = {};
	for (const name of Object.keys(INTEGRATION_EVENTS).sort() as IntegrationEventName[]) {
		const spec = INTEGRATION_EVENTS[name];
		const routingKey = integrationRoutingKey(name);
		messages[key(routingKey)] = {
			name: routingKey,
			title: name,
			summary: `${spec.summary} (from ${spec.from}). Routing key ${routingKey}.`,
			contentType: "application/json",
			correlationId: { location: "$message.payload#/correlationId" },
			payload: messagePayload(spec.payload, integrationEnvelopeSchema),
			bindings: { amqp: { messageType: routingKey, bindingVersion: AMQP_BINDING } }
		};
		integrationMessages[key(routingKey)] = { $ref: `#/components/messages/${key(routingKey)}` };
		operations[key(`publish.${routingKey}`)] = {
			action: "send",
			title: `Publish ${routingKey}`,
			channel: { $ref: "#/channels/integration" },
			messages: [{ $ref: `#/channels/integration/messages/${key(routingKey)}` }],
			bindings: { amqp: { cc: [routingKey], deliveryMode: 2, bindingVersion: AMQP_BINDING } }
		};
	}
	channels.integration = {
		address: integrationExchange,
		title: "integration (topic exchange)",
		description: "Versioned events for systems outside the shop. Bind your own queue with a routing key such as `OrderPlacedNotification.v1` or `*.v1`.",
		messages: integrationMessages,
		bindings: { amqp: { is: "routingKey", exchange: { name: integrationExchange, type: "topic", durable: true, autoDelete: false, vhost: "/" }, bindingVersion: AMQP_BINDING } }
	};

	return {
		asyncapi: "3.0.0",
		info: {
			title: "saga-commerce domain and integration events",
			version: opts.version,
			description:
				"Every fact the shop's services publish. A service writes an event to its outbox in the same transaction as the change; a relay publishes it to the event's fanout exchange with publisher confirms; each consuming service reads its own durable queue and records the event id in its inbox, so a repeat changes nothing."
		},
		defaultContentType: "application/json",
		servers: {
			rabbitmq: { host: opts.server ?? "localhost:5672", protocol: "amqp", protocolVersion: "0.9.1", description: "The shop's RabbitMQ (management UI on port 15672)" }
		},
		channels,
		operations,
		components: {
			schemas: { Envelope: jsonSchema(envelopeSchema), IntegrationEnvelope: jsonSchema(integrationEnvelopeSchema) },
			messages
		}
	};
}
