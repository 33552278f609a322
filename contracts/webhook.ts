/**
 * The payment provider's webhook signature: `X-Signature: sha256=<hex HMAC-SHA256 of the raw
 * body>` with the shared secret. The provider signs, the gateway verifies over the exact bytes
 * it received (never over re-serialized JSON).
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "x-signature";

export function signWebhook(rawBody: string | Buffer, secret: string): string {
	return "sha256=" + createHmac("sha256", secret).update(rawBody).digest("hex");
}

/** True only for a well-formed header carrying the body's HMAC under `secret` (compared in constant time). */
export function verifyWebhook(rawBody: string | Buffer | undefined, header: unknown, secret: string): boolean {
	if (!secret || rawBody === undefined || typeof header !== "string") return false;
	const m = /^sha256=([0-9a-f]{64})$/i.exec(header.trim());
	if (!m) return false;
	const expected = Buffer.from(signWebhook(rawBody, secret).slice(7), "hex");
	const given = Buffer.from(m[1]!.toLowerCase(), "hex");
	return given.length === expected.length && timingSafeEqual(given, expected);
}

/** What a provider's webhook says about a payment. */
export interface WebhookBody {
	eventId: string;
	transactionId: string;
	status: "approved" | "rejected";
}
