/**
 * Typed errors of saga-commerce. Every error a client can cause is a MoleculerClientError
 * with a stable `type` (docs/api.md lists them): the gateway maps `code` to the HTTP status as it is.
 * A participant's refusal (4xx) is never retried by a saga; anything else may be.
 */
import { Errors } from "moleculer";
import type { PaymentRefusal } from "./payments";

const { MoleculerClientError, MoleculerRetryableError } = Errors;

export type ErrorType =
	| "VALIDATION_ERROR"
	| "UNAUTHORIZED"
	| "FORBIDDEN"
	| "NOT_FOUND"
	| "OUT_OF_STOCK"
	| "EMAIL_TAKEN"
	| "EMAIL_NOT_VERIFIED"
	| "INVALID_TOKEN"
	| "INVALID_SIGNATURE"
	| "TOKEN_EXPIRED"
	| "INVALID_CREDENTIALS"
	| "CART_EMPTY"
	| "CART_LOCKED"
	| "CART_CHANGED"
	| "PROMO_CODE_USED_UP"
	| "INVALID_TRANSITION"
	| "PENDING_ORDERS"
	| "NAME_TAKEN"
	| "CATEGORY_TOO_DEEP"
	| "SKU_TAKEN"
	| "VARIANT_REQUIRED"
	| "PRODUCT_INACTIVE"
	| "CURRENCY_MISMATCH"
	| "NEGATIVE_STOCK"
	| "EXCEEDS_RESERVED"
	| "PAYMENT_DECLINED"
	| "INSUFFICIENT_FUNDS"
	| "UNSUPPORTED_CARD"
	| "PAYMENT_NOT_FOUND"
	| "REFUND_EXCEEDS_CAPTURED"
	| "IDEMPOTENCY_KEY_REUSED"
	| "RATE_LIMITED"
	| "PROMO_CODE_USED_UP"
	| "PROMO_CODE_INVALID"
	| "PROMO_CODE_TAKEN";

export function validationError(message: string, fields: Array<{ field: string; message: string; type?: string }>) {
	return new MoleculerClientError(message, 422, "VALIDATION_ERROR", fields);
}

/** A well-formed request the rules refuse, with a type code of its own (e.g. PROMO_CODE_INVALID). */
export function unprocessable(type: ErrorType, message: string, data?: unknown) {
	return new MoleculerClientError(message, 422, type, data);
}

export function notFound(what: string, id?: string) {
	return new MoleculerClientError(`${what} not found`, 404, "NOT_FOUND", id ? { id } : undefined);
}

export function conflict(type: ErrorType, message: string, data?: unknown) {
	return new MoleculerClientError(message, 409, type, data);
}

export function unauthorized(message = "Authentication required", type: ErrorType = "UNAUTHORIZED") {
	return new MoleculerClientError(message, 401, type);
}

export function forbidden(message = "Not allowed") {
	return new MoleculerClientError(message, 403, "FORBIDDEN");
}

/** A payment refusal: 402 is the honest status for a declined card. */
export function paymentRefused(type: PaymentRefusal, message: string) {
	return new MoleculerClientError(message, 402, type);
}

/** A temporary failure worth retrying (a saga step retries it within its budget). */
export function temporary(message: string, data?: unknown) {
	return new MoleculerRetryableError(message, 503, "TEMPORARILY_UNAVAILABLE", data);
}

/** True when an error is the other side's refusal rather than a failure to answer. */
export function isClientError(err: any): boolean {
	return typeof err?.code === "number" && err.code >= 400 && err.code < 500;
}

/** Codes and names of failures to reach a server (Redis, Postgres, RabbitMQ), as drivers report them. */
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENOTFOUND", "EAI_AGAIN", "ECONNABORTED"]);
const INFRASTRUCTURE_MESSAGES = [
	/Connection is closed/i, // ioredis
	/Stream isn't writeable/i, // ioredis without an offline queue
	/max retries per request/i, // ioredis MaxRetriesPerRequestError
	/Reached the max retries/i,
	/Connection terminated/i, // pg
	/Timeout acquiring a connection/i, // knex pool
	/the database system is (starting up|shutting down|in recovery mode)/i,
	/terminating connection due to administrator command/i
];

/**
 * True when an error says a server we depend on is unreachable, not that the request or our code
 * is wrong: the caller should get a retryable 503, never a 500.
 */
export function isInfrastructureError(err: any): boolean {
	if (!err || typeof err !== "object") return false;
	if (isClientError(err)) return false;
	if (typeof err.code === "string" && (NETWORK_CODES.has(err.code) || /^(08|57P0|53300)/.test(err.code))) return true;
	if (err.name === "MaxRetriesPerRequestError" || err.name === "KnexTimeoutError") return true;
	const message = String(err.message ?? "");
	return INFRASTRUCTURE_MESSAGES.some(re => re.test(message));
}

/** An infrastructure failure as the 503 a client may retry (other errors pass unchanged). */
export function asUnavailable(err: any): any {
	if (!isInfrastructureError(err) || err instanceof MoleculerRetryableError) return err;
	return new MoleculerRetryableError("A server this service needs is unavailable; try again", 503, "SERVICE_UNAVAILABLE", { cause: String(err.message ?? err).slice(0, 200) });
}
