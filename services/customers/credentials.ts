/**
 * Password hashes and access tokens.
 *
 * bcrypt reads only the first 72 bytes of its input, and a 128-character password may be up to
 * 512 bytes: two long passwords sharing a prefix would both match. So the password is first
 * reduced to its sha256 (44 base64 characters, no NUL byte) and that is what bcrypt hashes.
 * Cost 10 by default; BCRYPT_ROUNDS lowers it for tests.
 */
import { createHash } from "node:crypto";
import bcrypt from "bcryptjs";
import jwt from "jsonwebtoken";
import { settings } from "../../infra/settings";
import type { CustomerRow } from "./rules";

function rounds(): number {
	return settings.bcryptRounds;
}

function prehash(password: string): string {
	return createHash("sha256").update(password, "utf8").digest("base64");
}

export function hashPassword(password: string): Promise<string> {
	return bcrypt.hash(prehash(password), rounds());
}

let dummy: Promise<string> | null = null;

/**
 * True when `password` matches `hash`. Without a hash (no such customer) it still spends the
 * time of one comparison, so the answer's timing does not tell whether the email exists.
 */
export async function verifyPassword(password: string, hash: string | null | undefined): Promise<boolean> {
	if (!hash) {
		dummy ??= bcrypt.hash(prehash("no-such-customer-0"), rounds());
		await bcrypt.compare(prehash(password), await dummy);
		return false;
	}
	return bcrypt.compare(prehash(password), hash);
}

export interface TokenSettings {
	jwtSecret: string;
	jwtExpiresIn: string;
}

/** An HS256 JWT with the claims the gateway reads: `{ sub, role, email }`. */
export function signAccessToken(row: Pick<CustomerRow, "id" | "role" | "email">, s: TokenSettings): string {
	const expiresIn = /^\d+$/.test(s.jwtExpiresIn) ? Number(s.jwtExpiresIn) : (s.jwtExpiresIn as jwt.SignOptions["expiresIn"]);
	return jwt.sign({ role: row.role, email: row.email }, s.jwtSecret, { algorithm: "HS256", subject: row.id, expiresIn });
}
