/**
 * api — the HTTP gateway (moleculer-web). Routes come from one table (api/routes.ts); each
 * declares who may call it. Bearer JWTs identify the user; errors answer as `{ name, message, code, type, data }`;
 * X-Correlation-Id is accepted (or made), echoed, and carried in every call's meta.
 */
import { createHash, createSecretKey, KeyObject, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import Redis from "ioredis";
import jwt from "jsonwebtoken";
import { Errors } from "moleculer";
import ApiGateway from "moleculer-web";
import { forbidden, unauthorized, validationError } from "../contracts/errors";
import { SIGNATURE_HEADER, verifyWebhook } from "../contracts/webhook";
import { acquireKnex, releaseKnex } from "../infra/database";
import { isStopping } from "../infra/messaging-health";
import { defineService } from "../infra/service";
import { settings } from "../infra/settings";
import { clientAddress, parseTrustedProxies } from "./api/client-address";
import { badlyEncodedQuery, dirtyFields, IDEMPOTENCY_KEY, InputRefused, refuseFields, verifyJsonBody } from "./api/hostile-input";
import { toHttpError } from "./api/http-errors";
import { hit, Limit, MemoryRateLimitStore, RateLimitStore, RedisRateLimitStore, ResilientRateLimitStore } from "./api/rate-limit";
import { buildAsyncApi } from "./api/asyncapi";
import { ReadCache } from "./api/read-cache";
import { buildOpenApi } from "./api/openapi";
import { Access, GATEWAY_ROUTES, ROUTES } from "./api/routes";

/**
 * The JWT secret as a KeyObject, made once per secret: given the string, jsonwebtoken first tries
 * it as a public key (which throws) and then makes a secret key, on every request — the
 * gateway's largest single cost in the profile at saturation.
 */
let jwtKeyOf: { secret: string; key: KeyObject } | null = null;
function jwtKey(secret: string): KeyObject {
	if (jwtKeyOf?.secret !== secret) jwtKeyOf = { secret, key: createSecretKey(Buffer.from(secret)) };
	return jwtKeyOf.key;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const PACKAGE_VERSION: string = require("../package.json").version;

const CORRELATION_ID = /^[A-Za-z0-9._:-]{1,100}$/;
const GUEST_TOKEN = /^[A-Za-z0-9_-]{20,100}$/;

/** Each route of GATEWAY_ROUTES answered by the gateway itself, by `METHOD path`. */
function documentHandler(method: "openApi" | "asyncApi") {
	return function (this: any, _req: IncomingMessage, res: ServerResponse) {
		return this[method]().then(
			(doc: unknown) => sendJson(res, 200, doc),
			(err: unknown) => {
				const { status, body } = toHttpError(err);
				sendJson(res, status, body);
			}
		);
	};
}

const OWN_HANDLERS: Record<string, (this: any, req: IncomingMessage, res: ServerResponse) => unknown> = {
	"GET /health/live": (_req, res) => sendJson(res, 200, { status: "ok" }),
	"GET /health/ready": function (this: any, _req, res) {
		return this.readiness().then((r: any) => sendJson(res, r.status === "ok" ? 200 : 503, r));
	},
	"GET /openapi.json": documentHandler("openApi"),
	"GET /asyncapi.json": documentHandler("asyncApi")
};

const HTTP_REQUESTS = "http.requests.total";
const HTTP_DURATION = "http.request.duration";

/** `GET /metrics`, outside /api: every node's metrics in Prometheus format, for a scraper. */
function metricsHandler(this: any, _req: IncomingMessage, res: ServerResponse) {
	return this.broker.call("ops.metrics").then(
		(text: string) => {
			res.statusCode = 200;
			res.setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
			res.end(text);
		},
		(err: unknown) => {
			const { status, body } = toHttpError(err);
			sendJson(res, status, body);
		}
	);
}

function aliases() {
	const out: Record<string, any> = {};
	for (const r of ROUTES) {
		out[`${r.method} ${r.path}`] = { action: r.action, access: r.access, status: r.status, rename: r.rename, authLimit: r.authLimit, signed: r.signed };
	}
	for (const r of GATEWAY_ROUTES) {
		const handler = OWN_HANDLERS[`${r.method} ${r.path}`];
		if (!handler) throw new Error(`GATEWAY_ROUTES lists ${r.method} ${r.path} but the gateway has no handler for it`);
		out[`${r.method} ${r.path}`] = { access: r.access, handler };
	}
	return out;
}

function sendJson(res: ServerResponse, status: number, body: unknown) {
	res.statusCode = status;
	res.setHeader("Content-Type", "application/json; charset=utf-8");
	res.end(JSON.stringify(body));
}

/** GET answers that carry an ETag and may be revalidated with If-None-Match. */
const REVALIDATED_READS = new Set(["catalog.listProducts", "catalog.getProduct"]);

interface Vars {
	redis: Redis | null;
	rateLimits: RateLimitStore;
	readCache: ReadCache;
}

/** moleculer-web's own way of calling an action and answering; the gateway's read cache goes around it. */
const gatewayCallAction = (ApiGateway as any).methods.callAction as (...args: unknown[]) => Promise<unknown>;

export default defineService<object, Vars>({
	name: "api",
	created() {
		const redisUrl: string | null = (this.settings as any).redisUrl ?? settings.redisUrl;
		this.redis = redisUrl ? new Redis(redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false }) : null;
		if (this.redis) this.redis.on("error", () => undefined);
		// Each gateway (by its port setting's name space) counts in the shared store under the prefix.
		// While Redis is down the limits are counted in this replica's memory (fail to a local fallback).
		this.rateLimits = this.redis
			? new ResilientRateLimitStore(new RedisRateLimitStore(this.redis, `${settings.redisPrefix}${(this.settings as any).rateLimitPrefix ?? ""}`), (degraded, err) =>
					degraded ? this.logger.warn(`Rate limits counted in memory: Redis unavailable (${err?.message})`) : this.logger.info("Rate limits counted in Redis again")
				)
			: new MemoryRateLimitStore();
		this.knex = acquireKnex(settings);
		this.readCache = new ReadCache(settings.gatewayCacheTtlMs);
		if (this.broker.metrics.isEnabled() && !this.broker.metrics.getMetric(HTTP_REQUESTS)) {
			this.broker.metrics.register({ type: "counter", name: HTTP_REQUESTS, labelNames: ["method", "route", "status"], description: "HTTP requests per route and status" });
			this.broker.metrics.register({
				type: "histogram", name: HTTP_DURATION, labelNames: ["method", "route"], unit: "millisecond", description: "HTTP request latency per route (ms)",
				buckets: [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]
			});
		}
	},
	async started() {
		// Client connections stay open between requests, longer than a load balancer's usual 60 s idle timeout.
		const server = (this as any).server;
		if (server) {
			server.keepAliveTimeout = 65_000;
			server.headersTimeout = 66_000;
			// Every request is counted, also those refused before a route matched (401, 404, 413…).
			server.prependListener("request", (req: IncomingMessage, res: ServerResponse) => (this as any).countRequest(req, res));
		}
	},

	async stopped() {
		await this.rateLimits.close();
		await releaseKnex(settings);
	},
	mixins: [ApiGateway as any],
	events: {
		/** The catalog dropped its cache (a product, a category or a stock level changed): so does this gateway. */
		"catalog.cacheCleared"(this: any) {
			this.readCache.clear();
		}
	},
	actions: {
		/** Readiness calls it through the transporter to prove requests and replies flow. Not routed. */
		roundTrip: {
			visibility: "public",
			handler(this: any) {
				return { nodeID: this.broker.nodeID };
			}
		}
	},
	settings: {
		port: settings.port,
		ip: settings.host,
		routes: [
			{
				path: "",
				mappingPolicy: "restrict",
				autoAliases: false,
				aliases: { "GET /metrics": metricsHandler }
			},
			{
				path: "/api",
				mappingPolicy: "restrict",
				authentication: true,
				authorization: true,
				autoAliases: false,
				mergeParams: true,
				// Size (413), encoding and depth (hostile-input.ts) are checked on the raw bytes, before parsing;
				// a webhook's signature is checked over the exact bytes received.
				bodyParsers: {
					json: {
						strict: true,
						limit: settings.bodyLimit,
						verify: (req: any, res: unknown, buf: Buffer, encoding: string | null) => {
							verifyJsonBody(req, res, buf, encoding);
							if (typeof req.url === "string" && req.url.includes("/payments/webhooks/")) req.rawBody = buf;
						}
					}
				},
				aliases: aliases(),
				async onBeforeCall(this: any, ctx: any, _route: any, req: any, res: any, alias: any) {
					// A stopping gateway finishes the requests it holds and takes no new one: the client
					// (or the load balancer, which already sees readiness 503) retries on another replica.
					if (isStopping(this.broker) && !/\/health\/(live|ready)$/.test(String(req.parsedUrl ?? req.url))) {
						res.setHeader("Connection", "close");
						res.setHeader("Retry-After", "1");
						throw new Errors.MoleculerRetryableError("This gateway is shutting down; try again", 503, "SERVICE_UNAVAILABLE");
					}
					const sent = req.headers["x-correlation-id"];
					const correlationId = typeof sent === "string" && CORRELATION_ID.test(sent) ? sent : randomUUID();
					ctx.meta.correlationId = correlationId;
					res.setHeader("X-Correlation-Id", correlationId);
					await this.limitRate(req, res, alias);
					// A JSON array is no request body: its elements would otherwise vanish into the params.
					if (Array.isArray(req.body)) throw validationError("The request body must be a JSON object", [{ field: "body", message: "\"body\" must be an object", type: "object.base" }]);
					if (alias?.signed) this.checkSignature(req);
					this.refuseHostileInput(req);
					const key = req.headers["idempotency-key"];
					if (typeof key === "string") ctx.meta.idempotencyKey = key;
					if (alias?.rename) {
						for (const [from, to] of Object.entries(alias.rename as Record<string, string>)) {
							if (from in req.$params) {
								req.$params[to] = req.$params[from];
								delete req.$params[from];
							}
						}
					}
					if (alias?.status) ctx.meta.$statusCode = alias.status;
					// Through the action's shared queue, where RabbitMQ hands the request to a live replica
					// (and to another one if that dies before answering) — not to the node the registry
					// picked: a replica killed a moment ago stays listed until its heartbeat times out,
					// and a request pinned to it would go unanswered (504).
					if (settings.transporter && typeof alias?.action === "string") req.$endpoint = alias.action;
				},
				onAfterCall(this: any, ctx: any, _route: any, req: any, _res: any, data: any) {
					// Product list and detail: an ETag of the answer, so a client revalidates with
					// If-None-Match and gets a 304 without the body (moleculer-web answers it); no-cache
					// makes every use revalidate, so a price change is seen at once.
					if (req.method === "GET" && (ctx.meta.$statusCode ?? 200) === 200 && data && (req.$readCache || REVALIDATED_READS.has(req.$alias?.action))) {
						const body = Buffer.from(JSON.stringify(data));
						let etag = "";
						if (REVALIDATED_READS.has(req.$alias?.action)) {
							etag = `W/"${createHash("sha1").update(body).digest("base64url")}"`;
							ctx.meta.$responseHeaders = { ...ctx.meta.$responseHeaders, ETag: etag, "Cache-Control": ctx.meta.user ? "private, no-cache" : "public, no-cache" };
						}
						if (req.$readCache) this.readCache.set(req.$readCache.key, req.$readCache.generation, body, etag);
						// Sent as these bytes (encoded once, for the ETag and the cache alike).
						ctx.meta.$responseType = "application/json; charset=utf-8";
						return body;
					}
					// A 201 says where the new resource lives.
					if (ctx.meta.$statusCode === 201 && data && typeof data.id === "string") {
						// moleculer-web keeps an alias's path without its leading slash ("auth/register").
						const path = `/${String(req.$alias?.path ?? "").replace(/^\/+/, "")}`;
						ctx.meta.$location = path === "/auth/register" ? "/api/me" : `/api${path}/${data.id}`;
					}
					return data;
				},
				onError(this: any, req: any, res: any, err: any) {
					const { status, body } = toHttpError(err);
					// A 503 is a dependency's outage, reported once by whoever saw it, not our bug.
					if (status === 503) this.logger.warn(`${req.method} ${req.originalUrl}: ${body.message} (${err?.data?.cause ?? err?.message})`);
					else if (status >= 500) this.logger.error(`${req.method} ${req.originalUrl} failed`, err);
					if (!res.getHeader("X-Correlation-Id") && req.$ctx?.meta?.correlationId) res.setHeader("X-Correlation-Id", req.$ctx.meta.correlationId);
					sendJson(res, status, body);
				}
			}
		],
		onError(this: any, req: any, res: any, err: any) {
			const { status, body } = toHttpError(err);
			sendJson(res, status, body);
		},
		/** Counted per client address in a store shared by every gateway replica (Redis). */
		rateLimits: {
			windowMs: settings.rateLimitWindowMs,
			max: settings.rateLimitMax,
			authMax: settings.rateLimitAuthMax,
			/** Comma-separated addresses whose X-Forwarded-For is believed. */
			trustedProxies: settings.trustedProxies
		},
		log4XXResponses: false,
		// Request bodies carry passwords and card numbers: never logged, at any level.
		logRequestParams: null,
		logResponseData: null,
		logRequest: "debug",
		logResponse: "debug"
	},

	methods: {
		/**
		 * moleculer-web's callAction, after authentication, authorization and the checks of
		 * onBeforeCall (rate limit, hostile input): a cacheable read (read-cache.ts) answered from
		 * this gateway's memory when it holds it; a catalog or inventory write clears that memory
		 * once it answered.
		 */
		async callAction(this: any, route: any, actionName: string, req: any, res: ServerResponse, params: unknown, isStream: boolean) {
			const ctx = req.$ctx;
			const key = req.method === "GET" ? this.readCache.keyOf(actionName, params, ctx.meta.user?.role) : null;
			if (key) {
				const hit = this.readCache.get(key);
				if (hit) {
					if (hit.etag) ctx.meta.$responseHeaders = { ...ctx.meta.$responseHeaders, ETag: hit.etag, "Cache-Control": ctx.meta.user ? "private, no-cache" : "public, no-cache" };
					ctx.meta.$responseType = "application/json; charset=utf-8";
					this.sendResponse(req, res, hit.body, req.$endpoint?.action);
					return true;
				}
				req.$readCache = { key, generation: this.readCache.generation };
			}
			try {
				return await gatewayCallAction.call(this, route, actionName, req, res, params, isStream);
			} finally {
				if (req.method !== "GET" && /^(catalog|inventory)\./.test(actionName)) this.readCache.clear();
			}
		},

		/**
		 * Counts the request and its latency under its route (`GET /api/orders/:id`) once it is
		 * answered; a request no route took (an unknown path) is counted under `unmatched`.
		 */
		countRequest(this: any, req: any, res: ServerResponse) {
			if (!this.broker.metrics.isEnabled()) return;
			const started = process.hrtime.bigint();
			const method = String(req.method);
			res.once("finish", () => {
				const route = req.$alias?.fullPath ? String(req.$alias.fullPath) : "unmatched";
				this.broker.metrics.increment(HTTP_REQUESTS, { method, route, status: String(res.statusCode) });
				this.broker.metrics.observe(HTTP_DURATION, Number(process.hrtime.bigint() - started) / 1e6, { method, route });
			});
		},
		/** A provider's webhook must carry the HMAC of its raw body; anything else is logged and refused, changing nothing. */
		checkSignature(this: any, req: any) {
			if (verifyWebhook(req.rawBody, req.headers[SIGNATURE_HEADER], settings.webhookSecret)) return;
			const client = clientAddress(req.socket.remoteAddress, req.headers["x-forwarded-for"], parseTrustedProxies(this.settings.rateLimits.trustedProxies));
			const why = req.headers[SIGNATURE_HEADER] ? "a wrong signature" : "no signature";
			this.logger.warn(`Refused a payment webhook ${req.method} ${req.originalUrl ?? req.url} from ${client}: ${why}`);
			throw unauthorized("The webhook signature is missing or does not match the body", "INVALID_SIGNATURE");
		},

		/** NUL characters and text that is not UTF-8, anywhere we read: 422 before any service is called. */
		refuseHostileInput(req: any) {
			const badQuery = badlyEncodedQuery(req.url);
			if (badQuery.length) throw refuseFields(badQuery, "the query string");
			const dirty = dirtyFields(req.$params);
			if (typeof req.body === "string" || Array.isArray(req.body)) dirty.push(...dirtyFields(req.body));
			if (dirty.length) throw refuseFields([...new Set(dirty)], "the request");
			const key = req.headers["idempotency-key"];
			if (key !== undefined && (typeof key !== "string" || !IDEMPOTENCY_KEY.test(key))) {
				throw new InputRefused(422, "VALIDATION_ERROR", "Idempotency-Key must be 1–200 printable ASCII characters", [
					{ field: "Idempotency-Key", type: "header.invalid", message: "'Idempotency-Key' must be 1–200 printable ASCII characters" }
				]);
			}
		},

		/** The general limit for every request, and the strict one for login and register. */
		async limitRate(this: any, req: IncomingMessage, res: ServerResponse, alias: any) {
			const { windowMs, max, authMax, trustedProxies } = this.settings.rateLimits;
			const client = clientAddress(req.socket.remoteAddress, req.headers["x-forwarded-for"], parseTrustedProxies(trustedProxies));
			/** Every request of a client in a window; and login and register attempts, strictly. */
			const general: Limit = { name: "all", max, windowMs };
			const auth: Limit = { name: "auth", max: authMax, windowMs };
			for (const limit of alias?.authLimit ? [general, auth] : [general]) {
				const verdict = await hit(this.rateLimits as RateLimitStore, limit, client);
				if (!verdict.allowed) {
					res.setHeader("Retry-After", String(verdict.retryAfterSeconds));
					throw new Errors.MoleculerClientError("Too many requests; try again later", 429, "RATE_LIMITED", { retryAfter: verdict.retryAfterSeconds });
				}
			}
		},

		/** The OpenAPI document: the route table plus each service's joi descriptions, cached a minute. */
		async openApi(this: any) {
			if (this.openApiCache && this.openApiCache.until > Date.now()) return this.openApiCache.doc;
			const services = [...new Set(ROUTES.map(r => r.action.split(".")[0]!))];
			const descriptions = Object.assign({}, ...(await Promise.all(services.map(s => this.broker.call(`${s}.describeParams`)))));
			const doc = buildOpenApi(ROUTES, descriptions, { version: PACKAGE_VERSION });
			this.openApiCache = { doc, until: Date.now() + 60_000 };
			return doc;
		},

		/** The AsyncAPI document: the event catalogue plus the consumers of every running service, cached a minute. */
		async asyncApi(this: any) {
			if (this.asyncApiCache && this.asyncApiCache.until > Date.now()) return this.asyncApiCache.doc;
			const services: string[] = [...new Set<string>(this.broker.registry.getServiceList({ onlyAvailable: true, skipInternal: true }).map((s: any) => s.name))];
			// A service not declared with defineService (a test's observer) has no describeChannels: it is left out.
			const answers = await Promise.all(services.map(s => this.broker.call(`${s}.describeChannels`).catch(() => [])));
			const doc = buildAsyncApi({ version: PACKAGE_VERSION, namespace: settings.namespace, integrationExchange: settings.integrationExchange, consumers: answers.flat() });
			this.asyncApiCache = { doc, until: Date.now() + 60_000 };
			return doc;
		},

		/**
		 * Readiness: each server this process depends on, and which one is down. RabbitMQ counts as
		 * up only when a ping to this very node makes the round trip through the broker (published,
		 * routed, consumed, answered): a connection that looks open but whose channel is gone fails it.
		 */
		async readiness(this: any) {
			if (isStopping(this.broker)) return { status: "stopping", checks: {}, down: [] };
			const check = async (fn: () => Promise<unknown>) => {
				let timer: NodeJS.Timeout | undefined;
				try {
					await Promise.race([fn(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("timeout")), 2000)))]);
					return "up";
				} catch {
					return "down";
				} finally {
					clearTimeout(timer);
				}
			};
			const roundTrip = async () => {
				if (!this.broker.transit?.connected) throw new Error("not connected");
				// With RabbitMQ balancing, even a call to our own action is a request queued in the
				// broker and a response consumed from our reply queue.
				await this.broker.call("api.roundTrip", {}, { timeout: 2000, tracking: false });
			};
			const [rabbitmq, postgres, redis] = await Promise.all([
				settings.transporter ? check(roundTrip) : "embedded",
				check(() => this.knex.raw("select 1")),
				this.redis ? check(() => this.redis.ping()) : "embedded"
			]);
			const checks: Record<string, string> = { rabbitmq, postgres, redis };
			const down = Object.entries(checks).filter(([, v]) => v === "down").map(([k]) => k);
			return { status: down.length ? "unavailable" : "ok", checks, down };
		},

		/** Reads the bearer token; no header means an anonymous call, a bad token is refused. */
		async authenticate(_ctx: any, _route: any, req: IncomingMessage) {
			const header = req.headers.authorization;
			if (!header) return null;
			const m = /^Bearer (.+)$/i.exec(header);
			if (!m) throw unauthorized("The Authorization header must be 'Bearer <token>'", "INVALID_TOKEN");
			try {
				const claims = jwt.verify(m[1]!, jwtKey(settings.jwtSecret), { algorithms: ["HS256"] }) as jwt.JwtPayload;
				if (typeof claims.sub !== "string" || (claims.role !== "customer" && claims.role !== "admin")) throw new Error("claims");
				return { id: claims.sub, role: claims.role, email: claims.email };
			} catch (err: any) {
				throw unauthorized(err?.name === "TokenExpiredError" ? "The token has expired" : "The token is not valid", err?.name === "TokenExpiredError" ? "TOKEN_EXPIRED" : "INVALID_TOKEN");
			}
		},

		/** Each route's `access`: public, any logged-in user, or admins only. */
		async authorize(ctx: any, _route: any, req: IncomingMessage, _res: any, alias: any) {
			const access: Access = alias?.access ?? "admin";
			// A guest cart's token travels in meta (cart routes and checkout read it there).
			const guestToken = req.headers["x-guest-token"];
			if (typeof guestToken === "string" && GUEST_TOKEN.test(guestToken)) ctx.meta.guestToken = guestToken;
			if (access === "cart" && (ctx.meta.user || ctx.meta.guestToken)) return;
			if (access === "public") return;
			if (!ctx.meta.user) throw unauthorized();
			if (access === "admin" && ctx.meta.user.role !== "admin") throw forbidden("This needs the admin role");
		}
	}
});
