/**
 * Every setting of the system, and the only place that reads the environment: each variable
 * here has a row in the README's table (a test checks both). No variable set means the
 * embedded default: one process, local transport, PGlite under ./data, in-process saga store.
 *
 * `settings` is read once at start-up. A value that may change while the process runs (the
 * tests shorten the verification intervals, for one) is read with `readSettings()` where it is used.
 */
import path from "node:path";
import os from "node:os";

export interface Settings {
	transporter: string | null; // amqp://… or null for the local transport
	databaseUrl: string | null; // postgres://… or null for PGlite
	redisUrl: string | null; // redis://… or null for the in-process saga store
	/** REDIS_CLUSTER_NODES=host:port,… — the saga store on a Redis Cluster (these are its seed nodes); wins over REDIS_URL for sagas. */
	redisClusterNodes: Array<{ host: string; port: number }> | null;
	namespace: string; // Moleculer namespace; also prefixes channel exchanges and queues
	schemaPrefix: string; // prefix of every service's Postgres schema
	redisPrefix: string;
	dataDir: string;
	services: string[] | null; // SERVICES=a,b — null runs every service
	port: number;
	jwtSecret: string;
	jwtExpiresIn: string;
	adminEmail: string | null;
	adminPassword: string | null;
	logLevel: string;
	nodeId: string | undefined;
	checkoutWaitMs: number;
	sagaRecoveryIntervalMs: number;
	sagaLeaseMs: number;
	/** How long a saga that finished (completed or compensated) stays in the saga store (SAGA_RETENTION_DAYS, 7; 0: for ever). Its order stays in orders for good. */
	sagaRetentionMs: number;
	/** A pause before each saga step: lets a demo or a crash test catch a saga between steps. */
	sagaStepDelayMs: number;
	/**
	 * How long a saga step before the pivot keeps trying through temporary failures (a participant
	 * restarting, the broker reconnecting) before the saga gives up and compensates: attempts, and
	 * the first backoff, doubled each time (7 × from 250 ms ≈ 16 s in all).
	 */
	sagaStepAttempts: number;
	sagaStepBackoffMs: number;
	/** Crash tests only: points where this process kills itself once (see infra/crash.ts); empty = off. */
	crashAt: ReadonlySet<string>;
	/** Where the crash points' once-only markers are kept (shared by the processes of one machine). */
	crashMarkerDir: string;
	/** Checkout's reconciler: an order, cart or payment left before the pivot this long with no saga in the store is finished or compensated. */
	reconcileAfterMs: number;
	/** How often the reconciler looks (one checkout replica at a time); 0 turns it off. */
	reconcileIntervalMs: number;
	/** How long place-order waits for the bank's answer to a BLIK / PayPal payment before it gives up. */
	paymentDeadlineMs: number;
	/** HMAC secret of the payment provider's webhooks (X-Signature). */
	webhookSecret: string;
	/** Where the (simulated) payment provider sends its webhooks: the gateway's own address. */
	webhookTargetUrl: string;
	/** How long the simulated provider takes to approve or reject a BLIK code. */
	blikAnswerDelayMs: number;
	/** Where the simulated PayPal sends the buyer to approve (the storefront follows `redirectUrl`). */
	paypalApproveUrl: string;
	/** The topic exchange the integration events of outside systems go to. */
	integrationExchange: string;
	/** Inbox rows (and sent outbox rows) older than this are pruned; a redelivery older than it would run twice. */
	inboxRetentionDays: number;
	/** Idempotency keys older than this are pruned; a repeat with an older key would run again. */
	idempotencyRetentionDays: number;
	/** How often each service looks for rows to prune (one replica at a time does it). */
	pruneIntervalMs: number;
	/** Gateway: the address it listens on, the largest body and its deepest nesting, rate limits, proxies whose X-Forwarded-For is believed. */
	host: string;
	bodyLimit: string;
	maxJsonDepth: number;
	rateLimitWindowMs: number;
	rateLimitMax: number;
	rateLimitAuthMax: number;
	trustedProxies: string;
	/** Postgres connections per process. */
	dbPoolMax: number;
	/** bcrypt cost of password hashes (4–31). */
	bcryptRounds: number;
	/** How long an email verification token lives; how often a customer may ask for a new one. */
	verificationTtlMs: number;
	verificationResendIntervalMs: number;
	/** Where the storefront lives: links in emails point there. */
	storefrontUrl: string;
	/** Email: SMTP transport (none: messages are only kept in the delivery log), sender, attempts per message. */
	smtpUrl: string | null;
	mailFrom: string;
	mailAttempts: number;
	/** Longest life of a cached catalog answer (seconds); changes drop the cache before that. */
	catalogCacheTtlS: number;
	/**
	 * Stock changes drop the catalog cache at most once per this many ms (0: at every one): the
	 * first change of a quiet spell at once, the rest of the spell together at its end.
	 */
	catalogStockCleanMs: number;
	/**
	 * Where the catalog cache lives: CACHE_REDIS_URL, else the logical database after REDIS_URL's
	 * (redis://host:6379 → redis://host:6379/1). Apart from the sagas, leases and rate limits, so
	 * that dropping the cache — a SCAN for its keys, at every stock change — walks the cache's own
	 * keys, not every saga the shop ever ran. Null: the cache is kept in memory.
	 */
	cacheRedisUrl: string | null;
	/** Longest life of a read the gateway keeps in its own memory (ms; 0: none); changes drop it before that. */
	gatewayCacheTtlMs: number;
	/** The first pause before an email or SMS is tried again (×4 each time). */
	mailBackoffMs: number;
	/** SMS: the provider adapter (simulated: sends nowhere, +999… numbers are unreachable), attempts, first pause. */
	smsProvider: string;
	smsAttempts: number;
	smsBackoffMs: number;
	/** Who gets stock alerts besides the product's vendor (the first admin when not set). */
	alertEmails: string[];
	/** A cart with lines untouched this long expires; how often one replica looks. */
	cartTtlMs: number;
	cartExpiryIntervalMs: number;
	/** Soft reservation: how long a cart's lines hold their stock after its last change (0: off); how often expired holds are given back. */
	cartHoldMs: number;
	holdExpiryIntervalMs: number;
	/** Whether `npm start` loads the demo catalog into an empty shop: on when embedded, unless DEMO_DATA=0; else only with DEMO_DATA=1. */
	demoData: boolean;
	/** Moleculer's metrics (what `GET /metrics` shows); on unless METRICS=false. */
	metrics: boolean;
	/** A port of its own for this process's Prometheus reporter (none: only the gateway's `/metrics`). */
	metricsPort: number | null;
	/** Moleculer's tracer exporter: Console, Jaeger, Zipkin, Datadog, NewRelic, Event (none: tracing off). */
	tracingExporter: string | null;
	/** Where `npm run cluster` writes each process's log. */
	clusterLogDir: string;
}

/** A number from the environment, else the default (also for an empty or malformed value). */
function num(value: string | undefined, fallback: number, ok: (n: number) => boolean = Number.isFinite): number {
	if (value === undefined || value.trim() === "") return fallback;
	const n = Number(value);
	return Number.isFinite(n) && ok(n) ? n : fallback;
}

/** A non-negative number of milliseconds from the environment, else the default. */
export function msFrom(value: string | undefined, fallback: number): number {
	return num(value, fallback, n => n >= 0);
}

/** "host:port,host:port" → nodes; null when unset or empty. */
function clusterNodes(value: string | undefined): Array<{ host: string; port: number }> | null {
	const nodes = (value ?? "")
		.split(",")
		.map(s => s.trim())
		.filter(Boolean)
		.map(hostPort => {
			const i = hostPort.lastIndexOf(":");
			return i > 0 ? { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) } : { host: hostPort, port: 6379 };
		});
	return nodes.length ? nodes : null;
}

/** The same Redis server, the next logical database: redis://h:6379 → redis://h:6379/1, …/3 → …/4. */
export function nextRedisDatabase(url: string): string {
	const u = new URL(url);
	const db = Number(u.pathname.replace(/^\//, "") || 0);
	u.pathname = `/${(Number.isInteger(db) ? db : 0) + 1}`;
	return u.toString();
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
	const embedded = !env.TRANSPORTER && !env.DATABASE_URL && !env.REDIS_URL && !env.REDIS_CLUSTER_NODES;
	return {
		transporter: env.TRANSPORTER || null,
		databaseUrl: env.DATABASE_URL || null,
		redisUrl: env.REDIS_URL || null,
		redisClusterNodes: clusterNodes(env.REDIS_CLUSTER_NODES),
		namespace: env.NAMESPACE ?? "",
		schemaPrefix: env.SCHEMA_PREFIX ?? "",
		redisPrefix: env.REDIS_PREFIX ?? "saga-commerce:",
		dataDir: path.resolve(env.DATA_DIR ?? "data"),
		services: env.SERVICES ? env.SERVICES.split(",").map(s => s.trim()).filter(Boolean) : null,
		port: Number(env.PORT ?? 3000),
		jwtSecret: env.JWT_SECRET ?? (embedded ? "embedded-development-secret-change-me" : ""),
		jwtExpiresIn: env.JWT_EXPIRES_IN ?? "1h",
		adminEmail: env.ADMIN_EMAIL ?? (embedded ? "admin@shop.local" : null),
		adminPassword: env.ADMIN_PASSWORD ?? (embedded ? "admin-password-1" : null),
		logLevel: env.LOG_LEVEL ?? "info",
		nodeId: env.NODE_ID || undefined,
		checkoutWaitMs: Number(env.CHECKOUT_WAIT_MS ?? 5000),
		sagaRecoveryIntervalMs: Number(env.SAGA_RECOVERY_INTERVAL_MS ?? 1000),
		sagaLeaseMs: Number(env.SAGA_LEASE_MS ?? 2000),
		sagaRetentionMs: Math.round(num(env.SAGA_RETENTION_DAYS, 7, n => n >= 0) * 86_400_000),
		sagaStepDelayMs: Number(env.SAGA_STEP_DELAY_MS ?? 0),
		sagaStepAttempts: Number(env.SAGA_STEP_ATTEMPTS ?? 7),
		sagaStepBackoffMs: msFrom(env.SAGA_STEP_BACKOFF_MS, 250),
		crashAt: new Set((env.CRASH_AT ?? "").split(",").map(p => p.trim()).filter(Boolean)),
		crashMarkerDir: env.CRASH_MARKER_DIR || os.tmpdir(),
		paymentDeadlineMs: Number(env.PAYMENT_DEADLINE_MS ?? 120_000),
		reconcileAfterMs: msFrom(env.RECONCILE_AFTER_MS, 120_000),
		reconcileIntervalMs: msFrom(env.RECONCILE_INTERVAL_MS, 30_000),
		webhookSecret: env.WEBHOOK_SECRET ?? (embedded ? "embedded-webhook-secret-change-me" : ""),
		webhookTargetUrl: (env.WEBHOOK_TARGET_URL ?? env.PUBLIC_URL ?? `http://127.0.0.1:${env.PORT ?? 3000}`).replace(/\/+$/, ""),
		blikAnswerDelayMs: Number(env.BLIK_ANSWER_DELAY_MS ?? 500),
		paypalApproveUrl: env.PAYPAL_APPROVE_URL ?? "https://www.sandbox.paypal.com/checkoutnow",
		integrationExchange: env.INTEGRATION_EXCHANGE ?? "integration",
		inboxRetentionDays: Number(env.INBOX_RETENTION_DAYS ?? 7),
		idempotencyRetentionDays: Number(env.IDEMPOTENCY_RETENTION_DAYS ?? env.INBOX_RETENTION_DAYS ?? 7),
		pruneIntervalMs: Number(env.PRUNE_INTERVAL_MS ?? 3_600_000),
		host: env.HOST || "0.0.0.0",
		bodyLimit: env.BODY_LIMIT || "64kb",
		maxJsonDepth: num(env.MAX_JSON_DEPTH, 32, n => Number.isInteger(n) && n >= 1),
		rateLimitWindowMs: num(env.RATE_LIMIT_WINDOW_MS, 60_000, n => n > 0),
		rateLimitMax: num(env.RATE_LIMIT_MAX, 300, n => n > 0),
		rateLimitAuthMax: num(env.RATE_LIMIT_AUTH_MAX, 20, n => n > 0),
		trustedProxies: env.TRUSTED_PROXIES ?? "",
		dbPoolMax: num(env.DB_POOL_MAX, 10, n => Number.isInteger(n) && n >= 1),
		bcryptRounds: num(env.BCRYPT_ROUNDS, 10, n => Number.isInteger(n) && n >= 4 && n <= 31),
		verificationTtlMs: msFrom(env.VERIFICATION_TTL_MS, 24 * 60 * 60 * 1000),
		verificationResendIntervalMs: msFrom(env.VERIFICATION_RESEND_INTERVAL_MS, 60 * 1000),
		storefrontUrl: (env.STOREFRONT_URL || "http://localhost:3000").replace(/\/+$/, ""),
		smtpUrl: env.SMTP_URL || null,
		mailFrom: env.MAIL_FROM || "saga-commerce <no-reply@shop.local>",
		mailAttempts: num(env.MAIL_ATTEMPTS, 3, n => Number.isInteger(n) && n >= 1),
		catalogCacheTtlS: num(env.CATALOG_CACHE_TTL_S, 30, n => Number.isInteger(n) && n >= 1),
		catalogStockCleanMs: num(env.CATALOG_STOCK_CLEAN_MS, 1000, n => Number.isInteger(n) && n >= 0),
		cacheRedisUrl: env.CACHE_REDIS_URL || (env.REDIS_URL ? nextRedisDatabase(env.REDIS_URL) : null),
		gatewayCacheTtlMs: num(env.GATEWAY_CACHE_TTL_MS, 5000, n => Number.isInteger(n) && n >= 0),
		mailBackoffMs: msFrom(env.MAIL_BACKOFF_MS, 250),
		smsProvider: env.SMS_PROVIDER || "simulated",
		smsAttempts: num(env.SMS_ATTEMPTS, 3, n => Number.isInteger(n) && n >= 1),
		smsBackoffMs: msFrom(env.SMS_BACKOFF_MS, 250),
		alertEmails: (env.ALERT_EMAILS ?? env.ADMIN_EMAIL ?? (embedded ? "admin@shop.local" : "")).split(",").map(e => e.trim().toLowerCase()).filter(Boolean),
		cartTtlMs: msFrom(env.CART_TTL_MS, 7 * 24 * 60 * 60 * 1000),
		cartExpiryIntervalMs: msFrom(env.CART_EXPIRY_INTERVAL_MS, 60_000),
		cartHoldMs: msFrom(env.CART_HOLD_MS, 0),
		holdExpiryIntervalMs: msFrom(env.HOLD_EXPIRY_INTERVAL_MS, 30_000),
		demoData: env.DEMO_DATA === "1" || (env.DEMO_DATA !== "0" && embedded),
		metrics: env.METRICS !== "false",
		metricsPort: env.METRICS_PORT ? num(env.METRICS_PORT, 0, n => Number.isInteger(n) && n > 0) || null : null,
		tracingExporter: env.TRACING_EXPORTER || null,
		clusterLogDir: path.resolve(env.CLUSTER_LOG_DIR ?? "logs")
	};
}

export const settings = readSettings();
