/**
 * Broker configuration, read from the environment (infra/settings.ts).
 * Nothing set: one process, local transport, in-process channels, PGlite, in-process saga store.
 * TRANSPORTER / DATABASE_URL / REDIS_URL set: the distributed system over RabbitMQ, Postgres, Redis.
 */
import type { BrokerOptions } from "moleculer";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Middleware: ChannelsMiddleware } = require("@moleculer/channels");
import { asUnavailable } from "./contracts/errors";
import { SupervisedAmqpAdapter } from "./infra/amqp-channels";
import { ReliableAmqpTransporter } from "./infra/amqp-transporter";
import { CorrelationLogging } from "./infra/correlation.middleware";
import { JoiValidator, ReadableParams } from "./infra/joi-validator";
import { settings, Settings } from "./infra/settings";
import { CrashPoints } from "./infra/crash";
import { PromptDiscoverer } from "./infra/discoverer";

/**
 * The channels adapter: AMQP with durable queues, retries and a dead-letter queue, or in-process.
 * Over AMQP it is our supervised subclass of the package's adapter (infra/amqp-channels.ts).
 */
export function channelsAdapter(s: Settings) {
	if (!s.transporter) return { type: "Fake", options: { maxInFlight: 10 } };
	return new SupervisedAmqpAdapter({
		amqp: {
			url: s.transporter,
			socketOptions: { noDelay: true },
			publishAssertExchange: { enabled: true, exchangeOptions: {} },
			queueOptions: { durable: true },
			exchangeOptions: { durable: true }
		},
		maxInFlight: 20,
		maxRetries: 5,
		deadLettering: { enabled: true, queueName: "DEAD_LETTER" }
	});
}

/** Read caches (the catalog's): Redis under the run's key prefix, in a database of its own (`cacheRedisUrl`), when there is one, else this process's memory. */
export function cacherOptions(s: Settings) {
	const ttl = s.catalogCacheTtlS;
	if (s.cacheRedisUrl) return { type: "Redis", options: { prefix: `${s.redisPrefix}cache`, ttl, redis: s.cacheRedisUrl } };
	return { type: "Memory", options: { ttl, clone: true } };
}

export function brokerOptions(s: Settings = settings): BrokerOptions {
	return {
		namespace: s.namespace,
		nodeID: s.nodeId,
		// Moleculer's AMQP transporter with acks on the right channel and channels reopened (infra/amqp-transporter.ts).
		transporter: s.transporter
			? (new ReliableAmqpTransporter({
					url: s.transporter,
					socketOptions: { noDelay: true },
					prefetch: 100,
					autoDeleteQueues: true
				}) as any)
			: null,
		// RabbitMQ balances calls among replicas: one queue per action (`MOL-<ns>.REQB.<action>`),
		// acknowledged only after the handler answered, so a request to a replica that dies is redelivered.
		disableBalancer: !!s.transporter,
		// A node killed without a goodbye leaves every registry 1–3 s after its death: a beat every
		// 1 s ± 0.5 s, and our discoverer (infra/discoverer.ts) drops a node silent for 2.5 s, looking
		// every 250 ms (Moleculer's own compares whole seconds every `heartbeatTimeout`: 3–7 s).
		// Checkout then takes over its sagas at once ($node.disconnected). Shorter would drop live
		// nodes whenever a loaded machine stalls an event loop for a second or two. See docs/reliability.md.
		heartbeatInterval: 1,
		heartbeatTimeout: 3,
		registry: { discoverer: new PromptDiscoverer({ timeoutMs: 2500, checkEveryMs: 250 }) as any },
		serializer: "JSON",
		cacher: cacherOptions(s) as any,
		requestTimeout: 15_000,
		retryPolicy: { enabled: false },
		logger: { type: "Console", options: { level: s.logLevel, formatter: "short", colors: process.stdout.isTTY } },
		logLevel: s.logLevel as any,
		validator: new JoiValidator({}) as any,
		errorRegenerator: undefined,
		// A lost Redis or database is the service's temporary trouble, not the client's: 503, retryable.
		errorHandler(err: any) {
			throw asUnavailable(err);
		},
		middlewares: [ChannelsMiddleware({ adapter: channelsAdapter(s) }), CorrelationLogging, ReadableParams, ...(s.crashAt.size > 0 ? [CrashPoints] : [])],
		tracking: { enabled: true, shutdownTimeout: 10_000 },
		// Every node keeps its own metrics; the gateway's `GET /metrics` gathers them from all nodes.
		metrics: { enabled: s.metrics, reporter: s.metricsPort ? [{ type: "Prometheus", options: { port: s.metricsPort, path: "/metrics" } }] : [] },
		// Off unless TRACING_EXPORTER names one. Spans carry the correlation id, never the params (card numbers, passwords).
		tracing: s.tracingExporter
			? {
					enabled: true,
					exporter: [{ type: s.tracingExporter as any }],
					tags: {
						action: { params: false, meta: ["correlationId", "sagaId", "step"] },
						event: { params: false, meta: ["correlationId"] }
					}
				}
			: { enabled: false }
	};
}

export default brokerOptions();
