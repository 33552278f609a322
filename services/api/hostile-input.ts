/**
 * Hostile bytes stop at the gateway, before any service or query sees them:
 * - a JSON body must be UTF-8 and nest at most MAX_JSON_DEPTH levels (checked on the raw bytes,
 *   before JSON.parse, so no parser or validator down the line ever recurses that deep);
 * - no string — body, query, path parameter, or a header we read — may carry a NUL character,
 *   an unpaired UTF-16 surrogate, or (in a URL) a percent-encoding that is not UTF-8.
 * Postgres refuses NUL in text (22021), and such a value is never legitimate input: 422.
 */
import { isUtf8 } from "node:buffer";
import type { IncomingMessage } from "node:http";
import { settings } from "../../infra/settings";

export const MAX_JSON_DEPTH = settings.maxJsonDepth;

/** An error body-parser passes on as it is (status and type kept); toHttpError answers it. */
export class InputRefused extends Error {
	/** moleculer-web logs errors without a numeric code as server errors. */
	code: number;

	constructor(
		public status: number,
		public type: string,
		message: string,
		public fields?: Array<{ field: string; type: string; message: string }>
	) {
		super(message);
		this.code = status;
		this.name = status === 422 ? "ValidationError" : "BadRequest";
	}
}

/** body-parser's `verify` hook: runs on the raw bytes before they are parsed. */
export function verifyJsonBody(_req: IncomingMessage, _res: unknown, buf: Buffer, encoding: string | null) {
	if (encoding && encoding.toLowerCase() !== "utf-8" && encoding.toLowerCase() !== "utf8") {
		throw new InputRefused(415, "UNSUPPORTED_CHARSET", "A JSON body must be UTF-8");
	}
	if (!isUtf8(buf)) throw new InputRefused(400, "INVALID_ENCODING", "The request body is not valid UTF-8");
	const depth = jsonDepth(buf, MAX_JSON_DEPTH);
	if (depth > MAX_JSON_DEPTH) {
		throw new InputRefused(422, "JSON_TOO_DEEP", `The request body nests deeper than ${MAX_JSON_DEPTH} levels`);
	}
}

/** The nesting depth of JSON text, counting only brackets outside strings; stops past `limit`. */
export function jsonDepth(buf: Uint8Array, limit = Infinity): number {
	let depth = 0;
	let max = 0;
	let inString = false;
	for (let i = 0; i < buf.length; i++) {
		const c = buf[i];
		if (inString) {
			if (c === 0x5c) i++; // backslash: skip the escaped character
			else if (c === 0x22) inString = false;
		} else if (c === 0x22) inString = true;
		else if (c === 0x7b || c === 0x5b) {
			if (++depth > max) {
				max = depth;
				if (max > limit) return max;
			}
		} else if (c === 0x7d || c === 0x5d) depth--;
	}
	return max;
}

/** True when a string can be stored and shown as it is: no NUL, no lone surrogate. */
export function isCleanString(s: string): boolean {
	return !s.includes("\u0000") && (s as string & { isWellFormed(): boolean }).isWellFormed();
}

/**
 * Every string (and key) of an already parsed value, with its path; the walk is bounded by the
 * depth limit the body already passed (query strings are shallow by construction).
 */
export function dirtyFields(value: unknown, path = "", depth = 0): string[] {
	if (typeof value === "string") return isCleanString(value) ? [] : [path || "(body)"];
	if (value === null || typeof value !== "object" || depth > MAX_JSON_DEPTH + 2) return [];
	const out: string[] = [];
	const entries: Array<[string, unknown]> = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
	for (const [k, v] of entries) {
		const p = path ? `${path}.${k}` : k;
		if (!isCleanString(k)) out.push(p);
		else out.push(...dirtyFields(v, p, depth + 1));
		if (out.length >= 20) break;
	}
	return out;
}

/** Query parameters whose percent-encoding does not decode to UTF-8 (qs would keep them raw). */
export function badlyEncodedQuery(url: string | undefined): string[] {
	const q = url?.indexOf("?") ?? -1;
	if (!url || q < 0) return [];
	const out: string[] = [];
	for (const part of url.slice(q + 1).split("&")) {
		const [key = "", value = ""] = part.split(/=(.*)/s);
		for (const piece of [key, value]) {
			try {
				decodeURIComponent(piece.replace(/\+/g, " "));
			} catch {
				out.push(safeName(key));
				break;
			}
		}
	}
	return out;
}

/** A field name fit to echo back: the readable part of what the client sent. */
export function safeName(name: string): string {
	let decoded = name;
	try {
		decoded = decodeURIComponent(name);
	} catch {
		/* keep it raw */
	}
	return decoded.replace(/[^\x20-\x7e]/g, "?").slice(0, 100) || "(query)";
}

/** The 422 every refusal above becomes, naming each field. */
export function refuseFields(fields: string[], where: string): InputRefused {
	return new InputRefused(
		422,
		"VALIDATION_ERROR",
		`Invalid characters (NUL, or not UTF-8) in ${where}`,
		fields.map(field => ({ field, type: "string.invalidCharacters", message: `'${field}' contains a NUL character or text that is not UTF-8` }))
	);
}

/** Idempotency-Key: printable ASCII, 1–200 characters, or refused. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;
