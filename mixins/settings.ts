/**
 * Every setting of the system, read once from the environment. No variable set means the
 * embedded default: one process, local transport, PGlite under ./data, in-process saga store.
 */
import path from "node:path";

export interface Settings {
	transporter: string | null; // amqp://… or null for the local transport
	databaseUrl: string | null; // postgres://… or null for PGlite
	redisUrl: string | null; // redis://… or null for the in-process saga store
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
	/** A pause before each saga step: lets a demo or a crash test catch a saga between steps. */
	sagaStepDelayMs: number;
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
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
	const embedded = !env.TRANSPORTER && !env.DATABASE_URL && !env.REDIS_URL;
	return {
		transporter: env.TRANSPORTER || null,
		databaseUrl: env.DATABASE_URL || null,
		redisUrl: env.REDIS_URL || null,
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
		sagaLeaseMs: Number(env.SAGA_LEASE_MS ?? 3000),
		sagaStepDelayMs: Number(env.SAGA_STEP_DELAY_MS ?? 0),
		paymentDeadlineMs: Number(env.PAYMENT_DEADLINE_MS ?? 120_000),
		webhookSecret: env.WEBHOOK_SECRET ?? (embedded ? "embedded-webhook-secret-change-me" : ""),
		webhookTargetUrl: (env.WEBHOOK_TARGET_URL ?? env.PUBLIC_URL ?? `http://127.0.0.1:${env.PORT ?? 3000}`).replace(/\/+$/, ""),
		blikAnswerDelayMs: Number(env.BLIK_ANSWER_DELAY_MS ?? 500),
		paypalApproveUrl: env.PAYPAL_APPROVE_URL ?? "https://www.sandbox.paypal.com/checkoutnow",
		integrationExchange: env.INTEGRATION_EXCHANGE ?? "integration"
	};
}

export const settings = readSettings();
