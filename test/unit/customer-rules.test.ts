import { expect } from "chai";
import { createHash } from "node:crypto";
import { readSettings } from "../../infra/settings";
import {
	assertPassword,
	hashToken,
	judgeToken,
	newVerificationToken,
	normalizeEmail,
	PASSWORD_RULES,
	passwordProblems,
	toCustomer,
	TokenRow
} from "../../services/customers/rules";
import { hashPassword, verifyPassword } from "../../services/customers/credentials";

describe("customer rules", () => {
	describe("password", () => {
		it("accepts 8 to 128 characters with at least one letter and one digit", () => {
			expect(passwordProblems("abcdefg1")).to.deep.equal([]);
			expect(passwordProblems("a".repeat(127) + "1")).to.deep.equal([]);
			expect(passwordProblems("Zażółć gęślą 7")).to.deep.equal([], "any alphabet's letters count");
		});

		it("refuses a password that is too short, too long, or lacks a letter or a digit, saying which", () => {
			expect(passwordProblems("abc1")).to.deep.equal(["shorter than 8 characters"]);
			expect(passwordProblems("a".repeat(128) + "1")).to.deep.equal(["longer than 128 characters"]);
			expect(passwordProblems("12345678")).to.deep.equal(["no letter"]);
			expect(passwordProblems("abcdefgh")).to.deep.equal(["no digit"]);
			expect(passwordProblems("")).to.have.members(["shorter than 8 characters", "no letter", "no digit"]);
		});

		it("counts characters, not UTF-16 units: six emoji, a letter and a digit are eight characters, not fourteen", () => {
			expect(passwordProblems("😀😀😀😀😀😀a1")).to.deep.equal([]);
			expect(passwordProblems("😀😀😀a1")).to.deep.equal(["shorter than 8 characters"]);
		});

		it("a refusal is a 422 whose message states the rules and never echoes the password", () => {
			let err: any;
			try {
				assertPassword("secret");
			} catch (e) {
				err = e;
			}
			expect(err.code).to.equal(422);
			expect(err.type).to.equal("VALIDATION_ERROR");
			expect(err.message).to.include(PASSWORD_RULES);
			expect(err.message).to.include("8 to 128 characters").and.include("one letter").and.include("one digit");
			expect(err.data).to.deep.equal([{ field: "password", message: err.message, type: "password.rules" }]);
			expect(JSON.stringify({ m: err.message, d: err.data })).to.not.include("secret");
			expect(() => assertPassword("secret-99")).to.not.throw();
		});

		it("a hash verifies its own password only, even past bcrypt's 72 bytes", async () => {
			const long = "x1".repeat(60); // 120 characters: bcrypt alone would read only the first 72 bytes
			const hash = await hashPassword(long);
			expect(hash).to.match(/^\$2[aby]\$\d\d\$/);
			expect(hash).to.not.include(long);
			expect(await verifyPassword(long, hash)).to.equal(true);
			expect(await verifyPassword(long.slice(0, 118) + "y1", hash)).to.equal(false);
			expect(await verifyPassword("wrong-pass-1", hash)).to.equal(false);
			expect(await verifyPassword(long, undefined)).to.equal(false);
		});
	});

	describe("email", () => {
		it("is trimmed and lower-cased, so one address has one spelling", () => {
			expect(normalizeEmail("  Ada.Lovelace@Example.COM \n")).to.equal("ada.lovelace@example.com");
			expect(normalizeEmail("ada@example.com")).to.equal("ada@example.com");
			expect(normalizeEmail("ADA@EXAMPLE.COM")).to.equal(normalizeEmail("ada@example.com"));
		});
	});

	describe("verification token", () => {
		it("is 32 random bytes in base64url, and only its sha256 is kept", () => {
			const now = new Date("2030-01-01T00:00:00Z");
			const a = newVerificationToken(now, 1000);
			const b = newVerificationToken(now, 1000);
			expect(a.token).to.match(/^[A-Za-z0-9_-]{43}$/);
			expect(Buffer.from(a.token, "base64url")).to.have.length(32);
			expect(a.token).to.not.equal(b.token);
			expect(a.tokenHash).to.equal(createHash("sha256").update(a.token).digest("hex"));
			expect(a.tokenHash).to.match(/^[0-9a-f]{64}$/).and.not.include(a.token);
			expect(hashToken(a.token)).to.equal(a.tokenHash);
			expect(hashToken(b.token)).to.not.equal(a.tokenHash);
			expect(a.expiresAt.toISOString()).to.equal("2030-01-01T00:00:01.000Z");
		});

		it("is valid until it expires, refused as expired after, and refused as invalid when unknown or used", () => {
			const row = (over: Partial<TokenRow> = {}): TokenRow => ({
				id: "t", customer_id: "c", token_hash: "h", expires_at: "2030-01-02T00:00:00Z", used_at: null, created_at: "2030-01-01T00:00:00Z", ...over
			});
			const now = new Date("2030-01-01T12:00:00Z");
			expect(judgeToken(row(), now)).to.equal("valid");
			expect(judgeToken(row({ expires_at: "2030-01-01T12:00:00Z" }), now)).to.equal("TOKEN_EXPIRED");
			expect(judgeToken(undefined, now)).to.equal("INVALID_TOKEN");
			expect(judgeToken(row({ used_at: "2030-01-01T11:00:00Z" }), now)).to.equal("INVALID_TOKEN");
			expect(judgeToken(row({ used_at: "2030-01-01T11:00:00Z", expires_at: "2029-01-01T00:00:00Z" }), now)).to.equal("INVALID_TOKEN");
		});

		it("its lifetime comes from the environment when set to a number, else 24 hours", () => {
			const ttl = (value?: string) => readSettings({ VERIFICATION_TTL_MS: value }).verificationTtlMs;
			expect(ttl(undefined)).to.equal(86_400_000);
			expect(ttl("")).to.equal(86_400_000);
			expect(ttl("soon")).to.equal(86_400_000);
			expect(ttl("-5")).to.equal(86_400_000);
			expect(ttl("1500")).to.equal(1500);
		});
	});

	it("the public shape of a customer has no password hash", () => {
		const c = toCustomer({
			id: "id", email: "a@b.c", password_hash: "$2b$10$secret", first_name: "Ada", last_name: "L", role: "customer",
			email_verified: false, email_verified_at: null, erased_at: null, created_at: "2030-01-01T00:00:00Z", updated_at: "2030-01-01T00:00:00Z"
		});
		expect(c).to.deep.equal({ id: "id", email: "a@b.c", firstName: "Ada", lastName: "L", role: "customer", emailVerified: false, createdAt: "2030-01-01T00:00:00.000Z", updatedAt: "2030-01-01T00:00:00.000Z" });
	});
});
