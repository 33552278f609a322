/**
 * api — the HTTP gateway (moleculer-web). Routes come from one table (api/routes.ts); each
 * declares who may call it. Bearer JWTs identify the user; errors answer in API.md's shape;
 * X-Correlation-Id is accepted (or made), echoed, and carried in every call's meta.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import Redis from "ioredis";
import jwt from "jsonwebtoken";
import { Errors } from "moleculer";
import ApiGateway from "moleculer-web";
import { forbidden, unauthorized, validationError } from "../contracts/errors";
import { SIGNATURE_HEADER, verifyWebhook } from "../contracts/webhook";
import { acquireKnex, releaseKnex } from "../mixins/database";
import { defineService } from "../mixins/service";
import { settings } from "../mixins/settings";
import { clientAddress, parseTrustedProxies } from "./api/client-address";
import { toHttpError } from "./api/http-errors";
import { hit, Limit, MemoryRateLimitStore, RateLimitStore, RedisRateLimitStore } from "./api/rate-limit";
import { buildOpenApi } from "./api/openapi";
import { Access, ROUTES } from "./api/routes";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const PACKAGE_VERSION: string = require("../package.json").version;

const CORRELATION_ID = /^[A-Za-z0-9._:-]{1,100}$/;
const GUEST_TOKEN = /^[A-Za-z0-9_-]{20,100}$/;
const BODY_LIMIT = process.env.BODY_LIMIT ?? "64kb";

function aliases() {
	const out: Record<string, any> = {};
	for (const r of ROUTES) {
		out[`${r.method} ${r.path}`] = { action: r.action, access: r.access, status: r.status, rename: r.rename, authLimit: r.authLimit, signed: r.signed };
	}
	out["GET /health/live"] = { access: "public", handler: (_req: IncomingMessage, res: ServerResponse) => sendJson(res, 200, { status: "ok" }) };
	out["GET /openapi.json"] = {
		access: "public",
		handler(this: any, _req: IncomingMessage, res: ServerResponse) {
			return this.openApi().then(
				(doc: unknown) => sendJson(res, 200, doc),
				(err: unknown) => {
					const { status, body } = toHttpError(err);
					sendJson(res, status, body);
				}
			);
		}
	};
	out["GET /health/ready"] = {
		access: "public",
		handler(this: any, _req: IncomingMessage, res: ServerResponse) {
			return this.readiness().then((r: any) => sendJson(res, r.status === "ok" ? 200 : 503, r));
		}
	};
	return out;
}

function sendJson(res: ServerResponse, status: number, body: unknown) {
	res.statusCode = status;
	res.setHeader("Content-Type", "application/json; charset=utf-8");
	res.end(JSON.stringify(body));
}

interface Vars {
	redis: Redis | null;
	rateLimits: RateLimitStore;
}

export default defineService<object, Vars>({
	name: "api",
	created() {
		this.redis = settings.redisUrl ? new Redis(settings.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false }) : null;
		if (this.redis) this.redis.on("error", () => undefined);
		// Each gateway (by its port setting's name space) counts in the shared store under the prefix.
		this.rateLimits = this.redis ? new RedisRateLimitStore(this.redis, `${settings.redisPrefix}${(this.settings as any).rateLimitPrefix ?? ""}`) : new MemoryRateLimitStore();
		this.knex = acquireKnex(settings);
	},
	async stopped() {
		await this.rateLimits.close();
		await releaseKnex(settings);
	},
	mixins: [ApiGateway as any],
	settings: {
		port: settings.port,
		ip: process.env.HOST ?? "0.0.0.0",
		routes: [
			{
				path: "/api",
				mappingPolicy: "restrict",
				authentication: true,
				authorization: true,
				autoAliases: false,
				mergeParams: true,
				bodyParsers: {
					json: {
						strict: true,
						limit: BODY_LIMIT,
						// A webhook's signature is checked over the exact bytes received.
						verify: (req: any, _res: unknown, buf: Buffer) => {
							if (typeof req.url === "string" && req.url.includes("/payments/webhooks/")) req.rawBody = buf;
						}
					}
				},
				aliases: aliases(),
				async onBeforeCall(this: any, ctx: any, _route: any, req: any, res: any, alias: any) {
					const sent = req.headers["x-correlation-id"];
					const correlationId = typeof sent === "string" && CORRELATION_ID.test(sent) ? sent : randomUUID();
					ctx.meta.correlationId = correlationId;
					res.setHeader("X-Correlation-Id", correlationId);
					await this.limitRate(req, res, alias);
					// A JSON array is no request body: its elements would otherwise vanish into the params.
					if (Array.isArray(req.body)) throw validationError("The request body must be a JSON object", [{ field: "body", message: "\"body\" must be an object", type: "object.base" }]);
					if (alias?.signed) this.checkSignature(req);
					const key = req.headers["idempotency-key"];
					if (typeof key === "string" && key.length > 0 && key.length <= 200) ctx.meta.idempotencyKey = key;
					if (alias?.rename) {
						for (const [from, to] of Object.entries(alias.rename as Record<string, string>)) {
							if (from in req.$params) {
								req.$params[to] = req.$params[from];
								delete req.$params[from];
							}
						}
					}
					if (alias?.status) ctx.meta.$statusCode = alias.status;
				},
				onAfterCall(ctx: any, _route: any, req: any, _res: any, data: any) {
					// A 201 says where the new resource lives.
					if (ctx.meta.$statusCode === 201 && data && typeof data.id === "string") {
						// moleculer-web keeps the alias path without its leading slash.
					const path = String(req.$alias?.path ?? "").replace(/^\/?/, "/");
					ctx.meta.$location = path === "/auth/register" ? "/api/me" : `/api${path}/${data.id}`;
					}
					return data;
				},
				onError(this: any, req: any, res: any, err: any) {
					const { status, body } = toHttpError(err);
					if (status >= 500) this.logger.error(`${req.method} ${req.originalUrl} failed`, err);
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
			windowMs: Number(process.env.RATE_LIMIT_WINDOW_MS ?? 60_000),
			max: Number(process.env.RATE_LIMIT_MAX ?? 300),
			authMax: Number(process.env.RATE_LIMIT_AUTH_MAX ?? 20),
			/** Comma-separated addresses whose X-Forwarded-For is believed. */
			trustedProxies: process.env.TRUSTED_PROXIES ?? ""
		},
		log4XXResponses: false,
		// Request bodies carry passwords and card numbers: never logged, at any level.
		logRequestParams: null,
		logResponseData: null,
		logRequest: "debug",
		logResponse: "debug"
	},

	methods: {
		/** A provider's webhook must carry the HMAC of its raw body; anything else is logged and refused, changing nothing. */
		checkSignature(this: any, req: any) {
			if (verifyWebhook(req.rawBody, req.headers[SIGNATURE_HEADER], settings.webhookSecret)) return;
			const client = clientAddress(req.socket.remoteAddress, req.headers["x-forwarded-for"], parseTrustedProxies(this.settings.rateLimits.trustedProxies));
			const why = req.headers[SIGNATURE_HEADER] ? "a wrong signature" : "no signature";
			this.logger.warn(`Refused a payment webhook ${req.method} ${req.originalUrl ?? req.url} from ${client}: ${why}`);
			throw unauthorized("The webhook signature is missing or does not match the body", "INVALID_SIGNATURE");
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

		/** Readiness: each server this shop depends on, and which one is down. */
		async readiness(this: any) {
			const check = async (fn: () => Promise<unknown>) => {
				try {
					await Promise.race([fn(), new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 2000))]);
					return "up";
				} catch {
					return "down";
				}
			};
			const checks: Record<string, string> = {
				rabbitmq: settings.transporter ? (this.broker.transit?.connected ? "up" : "down") : "embedded",
				postgres: await check(() => this.knex.raw("select 1")),
				redis: this.redis ? await check(() => this.redis.ping()) : "embedded"
			};
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
				const claims = jwt.verify(m[1]!, settings.jwtSecret, { algorithms: ["HS256"] }) as jwt.JwtPayload;
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
