/**
 * Puts the correlation id in the logs: every action call is logged at debug level with it, and a
 * call that fails for a reason other than the client's is logged at warn level with it, so one
 * checkout can be followed through every service's log by the id the storefront sent.
 */
import type { Middleware } from "moleculer";

export const CorrelationLogging: Middleware = {
	name: "CorrelationLogging",
	localAction(next: any, action: any) {
		return function correlationLogged(ctx: any) {
			const correlationId = ctx.meta?.correlationId ?? ctx.requestID;
			const logger = ctx.service?.logger ?? ctx.broker.logger;
			logger.debug(`→ ${action.name} [correlation ${correlationId}]${ctx.meta?.sagaId ? ` [saga ${ctx.meta.sagaId} ${ctx.meta.step}]` : ""}`);
			return next(ctx).catch((err: any) => {
				if (!(typeof err?.code === "number" && err.code >= 400 && err.code < 500)) {
					logger.warn(`${action.name} failed [correlation ${correlationId}]: ${err?.message ?? err}`);
				}
				throw err;
			});
		};
	}
} as any;
