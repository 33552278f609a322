/** Maps any error to the HTTP answer every client gets: `{ name, message, code, type, data }`. */
import { isInfrastructureError } from "../../contracts/errors";
import { InputRefused } from "./hostile-input";

export interface HttpError {
	status: number;
	body: { name: string; message: string; code: number; type: string; data?: unknown };
}

export function toHttpError(err: any): HttpError {
	// The gateway's own refusals of hostile bytes (hostile-input.ts), raised in body-parser or onBeforeCall.
	if (err instanceof InputRefused) {
		return { status: err.status, body: { name: err.name, message: err.message, code: err.status, type: err.type, data: err.fields } };
	}
	// A path parameter whose percent-encoding is not UTF-8.
	if (err?.type === "UNABLE_DECODE_PARAM") {
		return { status: 422, body: { name: "ValidationError", message: "A path parameter is not valid UTF-8", code: 422, type: "VALIDATION_ERROR", data: [{ field: "(path)", type: "string.invalidCharacters", message: "A path parameter is not valid UTF-8" }] } };
	}
	// body-parser's own errors carry `status` and a `type` such as entity.too.large.
	if (err?.type === "entity.too.large" || err?.status === 413) {
		return { status: 413, body: { name: "PayloadTooLarge", message: "The request body is too large", code: 413, type: "PAYLOAD_TOO_LARGE" } };
	}
	if (err?.type === "entity.parse.failed" || (err instanceof SyntaxError && (err as any).status === 400)) {
		return { status: 400, body: { name: "BadRequest", message: "The request body is not valid JSON", code: 400, type: "MALFORMED_JSON" } };
	}
	if (typeof err?.status === "number" && err.status >= 400 && err.status < 500 && typeof err?.code !== "number") {
		return { status: err.status, body: { name: "BadRequest", message: String(err.message ?? "Bad request"), code: err.status, type: "BAD_REQUEST" } };
	}
	const code: number = typeof err?.code === "number" ? err.code : 500;
	switch (err?.type) {
		case "SERVICE_NOT_FOUND":
		case "SERVICE_NOT_AVAILABLE":
		case "SERVICE_UNAVAILABLE":
			// A route whose service is down is not the client's fault and not a missing page.
			return { status: 503, body: { name: "ServiceUnavailable", message: "The service is temporarily unavailable", code: 503, type: "SERVICE_UNAVAILABLE" } };
		case "REQUEST_TIMEOUT":
			return { status: 504, body: { name: "GatewayTimeout", message: "The service did not answer in time", code: 504, type: "TIMEOUT" } };
		case "NO_TOKEN":
		case "INVALID_TOKEN_HEADER":
			return { status: 401, body: { name: "Unauthorized", message: "Authentication required", code: 401, type: "UNAUTHORIZED" } };
	}
	if (err?.name === "NotFoundError" || (code === 404 && !err?.type)) {
		return { status: 404, body: { name: "NotFoundError", message: "Not found", code: 404, type: "NOT_FOUND" } };
	}
	if (code >= 400 && code < 500) {
		return { status: code, body: { name: err.name ?? "Error", message: err.message, code, type: err.type ?? "BAD_REQUEST", data: err.data ?? undefined } };
	}
	// A dependency of the service (its Redis, its database) is down: retry later, not our bug.
	if (code === 503 || isInfrastructureError(err)) {
		return { status: 503, body: { name: "ServiceUnavailable", message: "The service is temporarily unavailable", code: 503, type: "SERVICE_UNAVAILABLE" } };
	}
	return { status: 500, body: { name: "InternalError", message: "Something went wrong on our side", code: 500, type: "INTERNAL_ERROR" } };
}
