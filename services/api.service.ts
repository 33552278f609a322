/**
 * api — the HTTP gateway (moleculer-web). Routes come from one table (api/routes.ts); each
 * declares who may call it. Bearer JWTs identify the user; errors answer in API.md's shape;
 * X-Correlation-Id is accepted (or made), echoed, and carried in every call's meta.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import jwt from "jsonwebtoken";
import ApiGateway from "moleculer-web";
import { forbidden, unauthorized } from "../contracts/errors";
import { defineService } from "../mixins/service";
import { settings } from "../mixins/settings";
import { toHttpError } from "./api/http-errors";
import { Access, ROUTES } from "./api/routes";

const CORRELATION_ID = /^[A-Za-z0-9._:-]{1,100}$/;
const BODY_LIMIT = process.env.BODY_LIMIT ?? "64kb";

function aliases() {
	const out: Record<string, any> = {};
	for (const r of ROUTES) {
		out[`${r.method} ${r.path}`] = { action: r.action, access: r.access, status: r.status, rename: r.rename };
	}
	out["GET /health/live"] = { access: "public", handler: (_req: IncomingMessage, res: ServerResponse) => sendJson(res, 200, { status: "ok" }) };
	return out;
}

function sendJson(res: ServerResponse, status: number, body: unknown) {
	res.statusCode = status;
	res.setHeader("Content-Type", "application/json; charset=utf-8");
	res.end(JSON.stringify(body));
}

export default defineService({
	name: "api",
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
				bodyParsers: { json: { strict: true, limit: BODY_LIMIT } },
				aliases: aliases(),
				onBeforeCall(ctx: any, _route: any, req: any, res: any, alias: any) {
					const sent = req.headers["x-correlation-id"];
					const correlationId = typeof sent === "string" && CORRELATION_ID.test(sent) ? sent : randomUUID();
					ctx.meta.correlationId = correlationId;
					res.setHeader("X-Correlation-Id", correlationId);
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
		log4XXResponses: false,
		logRequest: "debug",
		logResponse: "debug"
	},

	methods: {
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
		async authorize(ctx: any, _route: any, _req: any, _res: any, alias: any) {
			const access: Access = alias?.access ?? "admin";
			if (access === "public") return;
			if (!ctx.meta.user) throw unauthorized();
			if (access === "admin" && ctx.meta.user.role !== "admin") throw forbidden("This needs the admin role");
		}
	}
});
