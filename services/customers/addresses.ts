/**
 * Shipping addresses and GDPR erasure: how an address row reads as the reply, how many a
 * customer may keep, and what an erased customer's row and events are left with. Pure
 * functions, no broker and no database.
 */
import { randomBytes } from "node:crypto";
import { Errors } from "moleculer";
import { validationError } from "../../contracts/errors";
import { checkPostalCode } from "./postal-codes";

export const MAX_ADDRESSES = 20;

export interface AddressRow {
	id: string;
	customer_id: string;
	recipient_name: string;
	street: string;
	city: string;
	state: string | null;
	postal_code: string;
	country: string;
	created_at: Date | string;
}

export interface Address {
	id: string;
	customerId: string;
	recipientName: string;
	street: string;
	city: string;
	state: string | null;
	postalCode: string;
	country: string;
	createdAt: string;
}

export function toAddress(row: AddressRow): Address {
	return {
		id: row.id,
		customerId: row.customer_id,
		recipientName: row.recipient_name,
		street: row.street,
		city: row.city,
		state: row.state,
		postalCode: row.postal_code,
		country: row.country,
		createdAt: new Date(row.created_at).toISOString()
	};
}

/** Country and postal code in canonical form, or the 422 naming the field at fault. */
export function assertPostalAddress(country: string, postalCode: string): { country: string; postalCode: string } {
	const verdict = checkPostalCode(country, postalCode);
	if (!verdict.ok) throw validationError(verdict.message, [{ field: verdict.field, message: verdict.message, type: verdict.type }]);
	return { country: verdict.country, postalCode: verdict.postalCode };
}

export function tooManyAddresses() {
	return new Errors.MoleculerClientError(
		`A customer keeps at most ${MAX_ADDRESSES} shipping addresses; delete one first`,
		409,
		"ADDRESS_LIMIT_REACHED",
		{ max: MAX_ADDRESSES }
	);
}

/** Order statuses after which an order no longer needs its customer: erasure waits for all others. */
export const FINISHED_ORDER_STATUSES = ["shipped", "delivered", "cancelled", "payment_failed"] as const;

/**
 * What is left of an erased customer's row: the same id (orders keep pointing at it), an
 * address nobody owns (so the real one can register again), no name, and a password hash
 * no password matches (not a bcrypt hash at all).
 */
export function erasedProfile(id: string) {
	return {
		email: `erased+${id}@erased.invalid`,
		first_name: "Erased",
		last_name: "Erased",
		password_hash: `!erased!${randomBytes(32).toString("base64url")}`,
		email_verified: false,
		email_verified_at: null
	};
}

/** Payload fields of the customers' events that are personal data; erasure strips them from the outbox. */
export const PERSONAL_PAYLOAD_FIELDS = ["email", "firstName", "lastName", "token", "street", "city", "state", "postalCode", "recipientName"] as const;
