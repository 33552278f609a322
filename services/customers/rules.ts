/**
 * The customers' rules that need no broker and no database: what a password must be, how an
 * email is written, how verification tokens are made and judged, and how a stored customer
 * reads as the reply (never with its password hash).
 */
import { createHash, randomBytes } from "node:crypto";
import { Errors } from "moleculer";
import { unauthorized, validationError } from "../../contracts/errors";

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 128;
export const PASSWORD_RULES = `A password must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters long and contain at least one letter and one digit`;

/** The rules a password breaks (empty when it is acceptable). Length counts characters, not UTF-16 units. */
export function passwordProblems(password: string): string[] {
	const problems: string[] = [];
	const length = [...password].length;
	if (length < PASSWORD_MIN) problems.push(`shorter than ${PASSWORD_MIN} characters`);
	if (length > PASSWORD_MAX) problems.push(`longer than ${PASSWORD_MAX} characters`);
	if (!/\p{L}/u.test(password)) problems.push("no letter");
	if (!/\p{Nd}/u.test(password)) problems.push("no digit");
	return problems;
}

/** Throws the 422 that states the rules (and what this password lacks); never echoes the password. */
export function assertPassword(password: string): void {
	const problems = passwordProblems(password);
	if (problems.length === 0) return;
	const message = `${PASSWORD_RULES} (this one: ${problems.join(", ")})`;
	throw validationError(message, [{ field: "password", message, type: "password.rules" }]);
}

/** One spelling per address: no surrounding spaces, lower case. Uniqueness is on this form. */
export function normalizeEmail(email: string): string {
	return email.trim().toLowerCase();
}

/** Only the sha256 of a verification token is stored: a copy of the table does not verify anyone. */
export function hashToken(token: string): string {
	return createHash("sha256").update(token, "utf8").digest("hex");
}

/** A new verification token: 32 random bytes, base64url (what the email carries), and its hash (what is kept). */
export function newVerificationToken(now: Date, ttlMs: number): { token: string; tokenHash: string; expiresAt: Date } {
	const token = randomBytes(32).toString("base64url");
	return { token, tokenHash: hashToken(token), expiresAt: new Date(now.getTime() + ttlMs) };
}

export interface TokenRow {
	id: string;
	customer_id: string;
	token_hash: string;
	expires_at: Date | string;
	used_at: Date | string | null;
	created_at: Date | string;
}

export type TokenVerdict = "valid" | "INVALID_TOKEN" | "TOKEN_EXPIRED";

/** Unknown or already used → INVALID_TOKEN; past its expiry → TOKEN_EXPIRED. */
export function judgeToken(row: TokenRow | undefined, now: Date): TokenVerdict {
	if (!row || row.used_at) return "INVALID_TOKEN";
	if (new Date(row.expires_at).getTime() <= now.getTime()) return "TOKEN_EXPIRED";
	return "valid";
}

export function tokenRefusal(verdict: Exclude<TokenVerdict, "valid">) {
	return verdict === "TOKEN_EXPIRED"
		? new Errors.MoleculerClientError("This verification link has expired; ask for a new one", 400, "TOKEN_EXPIRED")
		: new Errors.MoleculerClientError("This verification link is not valid (unknown or already used)", 400, "INVALID_TOKEN");
}

/** The same answer for an unknown email and a wrong password: nobody learns who has an account. */
export function invalidCredentials() {
	return unauthorized("The email or the password is not correct", "INVALID_CREDENTIALS");
}

export type Role = "customer" | "admin";

export interface CustomerRow {
	id: string;
	email: string;
	password_hash: string;
	first_name: string;
	last_name: string;
	role: Role;
	email_verified: boolean;
	email_verified_at: Date | string | null;
	erased_at: Date | string | null;
	created_at: Date | string;
	updated_at: Date | string;
}

export interface Customer {
	id: string;
	email: string;
	firstName: string;
	lastName: string;
	role: Role;
	emailVerified: boolean;
	createdAt: string;
	updatedAt: string;
}

/** The public shape: what the row says, minus the password hash (and anything else internal). */
export function toCustomer(row: CustomerRow): Customer {
	return {
		id: row.id,
		email: row.email,
		firstName: row.first_name,
		lastName: row.last_name,
		role: row.role,
		emailVerified: row.email_verified,
		createdAt: new Date(row.created_at).toISOString(),
		updatedAt: new Date(row.updated_at).toISOString()
	};
}
