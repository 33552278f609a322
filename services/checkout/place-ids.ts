/**
 * The ids of a checkout, derived from who asked and their Idempotency-Key: a retry of the same
 * request names the same saga and the same order, whatever happened to the process that took
 * the first one. Name-based UUIDs (RFC 9562 version 5: SHA-1 of a namespace and a name).
 */
import { createHash, randomUUID } from "node:crypto";

/** Our namespace for checkout ids (a fixed random UUID). */
const NAMESPACE = "6f1c2b3e-8d4a-4e7b-9c2f-5a0d3e1b7c64";

export function uuidV5(name: string, namespace = NAMESPACE): string {
	const hash = createHash("sha1").update(Buffer.from(namespace.replace(/-/g, ""), "hex")).update(name, "utf8").digest();
	const b = hash.subarray(0, 16);
	b[6] = (b[6]! & 0x0f) | 0x50; // version 5
	b[8] = (b[8]! & 0x3f) | 0x80; // RFC 4122 variant
	const hex = b.toString("hex");
	return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * With a key: the same ids for every retry of (customer, key). Without one: ids of this very
 * request (`requestId`, the id of the call's message), so the same message handed to another
 * replica after a crash names the same saga, while the client's next request is a new checkout.
 */
export function placeIds(customerId: string, idempotencyKey: string | undefined, requestId: string = randomUUID()): { sagaId: string; orderId: string } {
	const name = idempotencyKey ? JSON.stringify([customerId, idempotencyKey]) : JSON.stringify([customerId, { request: requestId }]);
	return { sagaId: uuidV5(`place-order saga ${name}`), orderId: uuidV5(`place-order order ${name}`) };
}

/**
 * A guest has no account: the orders, payments and promotions of a guest checkout carry this id
 * instead, derived from the guest cart's token (a hash of it, never the token), so the same
 * guest's retries name the same saga and only that guest can read its status.
 */
export function guestCustomerId(guestToken: string): string {
	return uuidV5(`guest ${createHash("sha256").update(guestToken, "utf8").digest("hex")}`);
}

/** Who places the order: the logged-in customer, or the guest whose cart token came with the request. */
export function buyerId(meta: { user?: { id: string } | null; guestToken?: unknown }): string | null {
	if (meta.user) return meta.user.id;
	return typeof meta.guestToken === "string" && meta.guestToken.length > 0 ? guestCustomerId(meta.guestToken) : null;
}
