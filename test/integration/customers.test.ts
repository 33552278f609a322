/**
 * customers (with notifications beside it) on real Moleculer nodes over RabbitMQ, data in
 * Postgres: calls come from a separate client node, events are observed on their channels,
 * the verification token is read from the delivery log as a storefront's operator would.
 */
import { expect } from "chai";
import jwt from "jsonwebtoken";
import { createHash, randomUUID } from "node:crypto";
import type { EventEnvelope } from "../../contracts/events";
import { eventually, refusal, useShop, startCluster } from "../support/cluster";

const SCHEMA = `${process.env.SCHEMA_PREFIX}customers`;
const LOG_SCHEMA = `${process.env.SCHEMA_PREFIX}notifications`;
const EVENTS = ["customer.registered", "customer.verification_requested", "customer.email_verified", "customer.updated", "notification.sent"];
const PASSWORD = "Passw0rd-long";

const newEmail = () => `c-${randomUUID().slice(0, 8)}@example.com`;
const asCustomer = (id: string, email = "someone@example.com") => ({ user: { id, role: "customer", email } });
const asAdmin = () => ({ user: { id: randomUUID(), role: "admin", email: "admin@test.local" } });
const settle = () => new Promise(r => setTimeout(r, 800)); // a duplicate would have arrived by now

describe("customers service (real RabbitMQ and Postgres)", function () {
	this.timeout(60_000);
	const shop = useShop([[], ["customers"], ["notifications"]], EVENTS);
	const call = shop.call;

	const register = (over: Record<string, unknown> = {}) =>
		call("customers.register", { email: newEmail(), password: PASSWORD, firstName: "Ada", lastName: "Lovelace", ...over });

	/** The newest verification email to `email`, once it is in the delivery log. */
	const verificationEmail = (email: string, count = 1) =>
		eventually(async () => {
			const log = await call("notifications.list", { to: email, template: "email_verification" });
			return log.total >= count ? log.rows[0] : null;
		}, 15_000, `verification email to ${email}`);

	const customersWith = async (email: string) =>
		Number((await shop.db.withSchema(SCHEMA).table("customers").whereRaw("lower(email) = ?", [email.trim().toLowerCase()]).count("* as n"))[0]!.n);

	/** Everything stored about one customer: what a refusal must leave as it was. */
	const stateOf = async (customerId: string) => ({
		customer: await shop.db.withSchema(SCHEMA).table("customers").where({ id: customerId }).first(),
		tokens: await shop.db.withSchema(SCHEMA).table("email_verification_tokens").where({ customer_id: customerId }).orderBy("created_at"),
		events: (await shop.db.withSchema(SCHEMA).table("outbox").where({ aggregate_id: customerId }).count("* as n"))[0]!.n
	});

	describe("register", () => {
		it("answers the unverified customer without secrets, publishes customer.registered, and a verification email with its token reaches the log", async () => {
			const email = newEmail();
			const c = await register({ email });
			expect(c).to.have.all.keys("id", "email", "firstName", "lastName", "role", "emailVerified", "createdAt", "updatedAt");
			expect(c).to.include({ email, firstName: "Ada", lastName: "Lovelace", role: "customer", emailVerified: false });

			const registered = await shop.events.waitFor("customer.registered", e => e.aggregate_id === c.id);
			expect(registered.payload).to.include({ customerId: c.id, email, firstName: "Ada", lastName: "Lovelace" });
			expect(registered.payload).to.not.have.any.keys("token", "password", "passwordHash");
			const requested = (await shop.events.waitFor("customer.verification_requested", e => e.aggregate_id === c.id)) as EventEnvelope<any>;
			expect(requested.payload).to.include({ customerId: c.id, email, firstName: "Ada" });
			expect(requested.payload.token).to.match(/^[A-Za-z0-9_-]{43}$/);
			const ttl = new Date(requested.payload.expiresAt).getTime() - Date.now();
			expect(ttl).to.be.within(23.9 * 3600_000, 24 * 3600_000);

			const mail = await verificationEmail(email);
			expect(mail).to.include({ channel: "email", to: email, template: "email_verification", status: "sent" });
			expect(mail.data).to.deep.equal({ customerId: c.id, token: requested.payload.token });
			expect(mail.text).to.include(requested.payload.token);
			await shop.events.waitFor("notification.sent", e => e.payload.notificationId === mail.id);

			// Only the token's hash is stored.
			const tokens = await shop.db.withSchema(SCHEMA).table("email_verification_tokens").where({ customer_id: c.id });
			expect(tokens).to.have.length(1);
			expect(tokens[0].token_hash).to.equal(createHash("sha256").update(requested.payload.token).digest("hex"));
			expect(JSON.stringify(tokens)).to.not.include(requested.payload.token);
		});

		it("a repeat under the same idempotency key answers the same customer instead of a conflict", async () => {
			const email = newEmail();
			const idempotencyKey = randomUUID();
			const first = await register({ email, idempotencyKey });
			const again = await register({ email, idempotencyKey });
			expect(again).to.deep.equal(first);
			expect(await customersWith(email)).to.equal(1);
		});

		it("an email is trimmed and lower-cased; the same address in another case is refused with 409 EMAIL_TAKEN and the first account stays as it was", async () => {
			const local = `Mixed-${randomUUID().slice(0, 8)}`;
			const c = await register({ email: `  ${local}@Example.COM `, firstName: "First" });
			expect(c.email).to.equal(`${local.toLowerCase()}@example.com`);
			const before = await stateOf(c.id);

			const err = await refusal(register({ email: `${local.toUpperCase()}@example.com`, firstName: "Second" }));
			expect(err.code).to.equal(409);
			expect(err.type).to.equal("EMAIL_TAKEN");
			expect(await customersWith(c.email)).to.equal(1);
			expect(await stateOf(c.id)).to.deep.equal(before);
		});

		it("concurrent registrations of one address make exactly one account", async () => {
			const local = `race-${randomUUID().slice(0, 8)}`;
			const spellings = [`${local}@example.com`, `${local.toUpperCase()}@example.com`, `${local}@EXAMPLE.com`, ` ${local}@example.com`, `${local}@Example.com`];
			const answers = await Promise.allSettled(spellings.map(email => register({ email })));
			const won = answers.filter(a => a.status === "fulfilled");
			const lost = answers.filter((a): a is PromiseRejectedResult => a.status === "rejected");
			expect(won).to.have.length(1);
			expect(lost.map(l => [l.reason.code, l.reason.type])).to.deep.equal(Array(4).fill([409, "EMAIL_TAKEN"]));
			expect(await customersWith(`${local}@example.com`)).to.equal(1);
		});

		it("an invalid email is refused with 422 naming the field, and no customer is created", async () => {
			for (const email of ["not-an-email", "ada@", "@example.com", "ada@example", "a b@example.com", `${"x".repeat(320)}@example.com`]) {
				const err = await refusal(register({ email }));
				expect(err.code, email).to.equal(422);
				expect(err.type).to.equal("VALIDATION_ERROR");
				expect([...new Set(err.data.map((d: any) => d.field))]).to.deep.equal(["email"]);
				expect(await customersWith(email)).to.equal(0);
			}
		});

		it("a weak password is refused with 422 whose message states the rules, and no customer is created", async () => {
			for (const password of ["short1", "onlyletters", "1234567890", "a".repeat(128) + "1"]) {
				const email = newEmail();
				const err = await refusal(register({ email, password }));
				expect(err.code, password).to.equal(422);
				expect(err.type).to.equal("VALIDATION_ERROR");
				expect(err.message).to.include("8 to 128 characters").and.include("at least one letter and one digit");
				expect(err.data[0].field).to.equal("password");
				expect(JSON.stringify(err.data)).to.not.include(password);
				expect(await customersWith(email)).to.equal(0);
			}
		});

		it("missing fields, unknown fields and over-long names are refused with 422 listing each field, and no customer is created", async () => {
			const email = newEmail();
			const missing = await refusal(call("customers.register", { email }));
			expect(missing.code).to.equal(422);
			expect(missing.data.map((d: any) => d.field)).to.have.members(["password", "firstName", "lastName"]);

			const unknown = await refusal(register({ email, role: "admin" }));
			expect(unknown.code).to.equal(422);
			expect(unknown.data.map((d: any) => d.field)).to.deep.equal(["role"]);

			const long = await refusal(register({ email, firstName: "x".repeat(101), lastName: "   " }));
			expect(long.code).to.equal(422);
			expect(long.data.map((d: any) => d.field)).to.have.members(["firstName", "lastName"]);

			expect(await customersWith(email)).to.equal(0);
		});
	});

	describe("verifyEmail", () => {
		it("the emailed token verifies the customer once: emailVerified true, customer.email_verified, then the token is spent", async () => {
			const email = newEmail();
			const c = await register({ email });
			const { data } = await verificationEmail(email);

			const verified = await call("customers.verifyEmail", { token: data.token });
			expect(verified).to.include({ id: c.id, email, emailVerified: true });
			expect((await call("customers.get", { id: c.id })).emailVerified).to.equal(true);
			const ev = await shop.events.waitFor("customer.email_verified", e => e.aggregate_id === c.id);
			expect(ev.payload).to.include({ customerId: c.id, email });
			expect(ev.payload).to.not.have.property("token");

			const before = await stateOf(c.id);
			const again = await refusal(call("customers.verifyEmail", { token: data.token }));
			expect(again.code).to.equal(400);
			expect(again.type).to.equal("INVALID_TOKEN");
			expect(await stateOf(c.id)).to.deep.equal(before);

			// The outbox keeps no copy of a token once it has served.
			const kept = await shop.db.withSchema(SCHEMA).table("outbox").where({ aggregate_id: c.id, event_name: "customer.verification_requested" });
			expect(JSON.stringify(kept)).to.not.include(data.token);
		});

		it("an unknown token is refused with 400 INVALID_TOKEN and nothing changes", async () => {
			const email = newEmail();
			const c = await register({ email });
			await verificationEmail(email);
			const before = await stateOf(c.id);
			for (const token of ["nope", "x".repeat(43), randomUUID()]) {
				const err = await refusal(call("customers.verifyEmail", { token }));
				expect(err.code).to.equal(400);
				expect(err.type).to.equal("INVALID_TOKEN");
			}
			expect((await refusal(call("customers.verifyEmail", {}))).code).to.equal(422);
			expect(await stateOf(c.id)).to.deep.equal(before);
			expect(before.customer.email_verified).to.equal(false);
		});

		it("an expired token is refused with 400 TOKEN_EXPIRED and the customer stays unverified", async () => {
			const email = newEmail();
			const c = await register({ email });
			const { data } = await verificationEmail(email);
			// A day later.
			await shop.db.withSchema(SCHEMA).table("email_verification_tokens").where({ customer_id: c.id }).update({ expires_at: new Date(Date.now() - 1000) });
			const before = await stateOf(c.id);

			const err = await refusal(call("customers.verifyEmail", { token: data.token }));
			expect(err.code).to.equal(400);
			expect(err.type).to.equal("TOKEN_EXPIRED");
			expect(await stateOf(c.id)).to.deep.equal(before);
			expect((await call("customers.get", { id: c.id })).emailVerified).to.equal(false);
			await settle();
			expect(shop.events.of("customer.email_verified", c.id)).to.have.length(0);
		});

		it("a verification event delivered twice sends one email", async () => {
			const email = newEmail();
			const c = await register({ email });
			const first = await shop.events.waitFor("customer.verification_requested", e => e.aggregate_id === c.id);
			await verificationEmail(email);
			for (let i = 0; i < 2; i++) await (shop.cluster.broker as any).sendToChannel(first.event_name, first);
			await eventually(() => shop.events.of("customer.verification_requested", c.id).length >= 3, 10_000, "the redelivered events");
			await settle();
			expect((await call("notifications.list", { to: email })).total).to.equal(1);
		});
	});

	describe("resendVerification", () => {
		afterEach(() => {
			delete process.env.VERIFICATION_RESEND_INTERVAL_MS;
		});

		it("always answers ok; an unverified customer gets a new token at most once per interval, a verified one or a stranger gets nothing", async () => {
			const stranger = newEmail();
			expect(await call("customers.resendVerification", { email: stranger })).to.deep.equal({ ok: true });

			const email = newEmail();
			const c = await register({ email });
			const first = await verificationEmail(email);
			expect(await call("customers.resendVerification", { email: email.toUpperCase() })).to.deep.equal({ ok: true }); // within the minute: none
			await settle();
			expect((await call("notifications.list", { to: email })).total).to.equal(1);

			process.env.VERIFICATION_RESEND_INTERVAL_MS = "0";
			expect(await call("customers.resendVerification", { email })).to.deep.equal({ ok: true });
			const second = await verificationEmail(email, 2);
			expect(second.data.token).to.not.equal(first.data.token);
			expect(second.data.customerId).to.equal(c.id);

			await call("customers.verifyEmail", { token: second.data.token });
			expect((await refusal(call("customers.verifyEmail", { token: first.data.token }))).type).to.equal("INVALID_TOKEN");
			expect(await call("customers.resendVerification", { email })).to.deep.equal({ ok: true });
			await settle();
			expect((await call("notifications.list", { to: email })).total).to.equal(2);
			expect((await call("notifications.list", { to: stranger })).total).to.equal(0);
		});
	});

	describe("login", () => {
		it("the right password answers a HS256 JWT with sub, role and email, valid for JWT_EXPIRES_IN, and the customer", async () => {
			const email = newEmail();
			const c = await register({ email });
			const answer = await call("customers.login", { email: ` ${email.toUpperCase()} `, password: PASSWORD });
			expect(answer.customer).to.deep.equal(c);
			const claims = jwt.verify(answer.token, process.env.JWT_SECRET!, { algorithms: ["HS256"] }) as jwt.JwtPayload;
			expect(claims).to.include({ sub: c.id, role: "customer", email });
			expect(claims.exp! - claims.iat!).to.equal(3600);
			expect(jwt.decode(answer.token, { complete: true })!.header.alg).to.equal("HS256");
		});

		it("a wrong password and an unknown email get the same 401 INVALID_CREDENTIALS", async () => {
			const email = newEmail();
			await register({ email });
			const wrong = await refusal(call("customers.login", { email, password: "Wrong-passw0rd" }));
			const unknown = await refusal(call("customers.login", { email: newEmail(), password: PASSWORD }));
			for (const err of [wrong, unknown]) {
				expect(err.code).to.equal(401);
				expect(err.type).to.equal("INVALID_CREDENTIALS");
			}
			expect(wrong.message).to.equal(unknown.message);
			expect((await refusal(call("customers.login", { email }))).code).to.equal(422);
		});

		it("an erased customer cannot log in and is not found", async () => {
			const email = newEmail();
			const c = await register({ email });
			await shop.db.withSchema(SCHEMA).table("customers").where({ id: c.id }).update({ erased_at: new Date() });
			const err = await refusal(call("customers.login", { email, password: PASSWORD }));
			expect(err.type).to.equal("INVALID_CREDENTIALS");
			expect((await refusal(call("customers.get", { id: c.id }))).code).to.equal(404);
		});
	});

	describe("profile", () => {
		it("get answers the customer to internal callers, admins and the customer itself; another customer gets 404", async () => {
			const c = await register();
			expect(await call("customers.get", { id: c.id })).to.deep.equal(c);
			expect(await call("customers.get", { id: c.id }, asAdmin())).to.deep.equal(c);
			expect(await call("customers.get", { id: c.id }, asCustomer(c.id, c.email))).to.deep.equal(c);
			const other = await refusal(call("customers.get", { id: c.id }, asCustomer(randomUUID())));
			expect(other.code).to.equal(404);
			expect(other.type).to.equal("NOT_FOUND");
			expect((await refusal(call("customers.get", { id: randomUUID() }))).code).to.equal(404);
			expect((await refusal(call("customers.get", { id: "not-a-uuid" }))).code).to.equal(422);
		});

		it("me answers the logged-in customer; without a user it is 401", async () => {
			const c = await register();
			expect(await call("customers.me", {}, asCustomer(c.id, c.email))).to.deep.equal(c);
			expect((await refusal(call("customers.me", {}))).code).to.equal(401);
		});

		it("updateMe changes the names and publishes customer.updated with what changed; an empty change is 422", async () => {
			const c = await register();
			const me = asCustomer(c.id, c.email);
			const updated = await call("customers.updateMe", { lastName: "  Byron " }, me);
			expect(updated).to.include({ id: c.id, firstName: "Ada", lastName: "Byron" });
			expect(new Date(updated.updatedAt).getTime()).to.be.greaterThan(new Date(c.updatedAt).getTime());
			const ev = await shop.events.waitFor("customer.updated", e => e.aggregate_id === c.id);
			expect(ev.payload).to.deep.include({ customerId: c.id, firstName: "Ada", lastName: "Byron", changedFields: ["lastName"] });

			const empty = await refusal(call("customers.updateMe", {}, me));
			expect(empty.code).to.equal(422);
			expect((await refusal(call("customers.updateMe", { firstName: "" }, me))).code).to.equal(422);
			expect((await refusal(call("customers.updateMe", { email: "x@example.com" }, me))).code).to.equal(422);
			expect(await call("customers.me", {}, me)).to.deep.equal(updated);
		});
	});

	describe("admin bootstrap", () => {
		const adminEmail = process.env.ADMIN_EMAIL!.toLowerCase();
		const admins = () => shop.db.withSchema(SCHEMA).table("customers").whereRaw("lower(email) = ?", [adminEmail]);

		it("the admin from ADMIN_EMAIL / ADMIN_PASSWORD exists once, verified, and logs in with the admin role", async () => {
			const rows = await admins();
			expect(rows).to.have.length(1);
			expect(rows[0]).to.include({ role: "admin", email_verified: true });
			const answer = await call("customers.login", { email: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD });
			expect(answer.customer).to.include({ role: "admin", emailVerified: true });
			expect((jwt.decode(answer.token) as jwt.JwtPayload).role).to.equal("admin");
		});

		it("two customers nodes starting together create the admin once, and a restart does not add another", async () => {
			await admins().delete();
			const pair = await startCluster([["customers"], ["customers"]]);
			try {
				expect(await admins()).to.have.length(1);
				// Node start-ups rarely overlap to the millisecond: force the race with both nodes' start-up step at once.
				await admins().delete();
				const nodes = pair.brokers.map(b => b.getLocalService("customers") as any);
				await Promise.all(nodes.flatMap(s => [s.bootstrapAdmin(), s.bootstrapAdmin(), s.bootstrapAdmin()]));
				expect(await admins()).to.have.length(1);
			} finally {
				await pair.stop();
			}
			const again = await startCluster([["customers"]]);
			await again.stop();
			const rows = await admins();
			expect(rows).to.have.length(1);
			expect(rows[0]).to.include({ role: "admin", email_verified: true });
		});
	});

	describe("secrets", () => {
		it("no password appears in any table of customers or notifications nor in any event, and the hash stays in customers.customers", async () => {
			const password = `Unique-${randomUUID()}-9`;
			const email = newEmail();
			const c = await register({ email, password });
			await verificationEmail(email);
			await call("customers.login", { email, password });
			await refusal(call("customers.login", { email, password: password + "x" }));
			await refusal(register({ email, password }));
			const hash = (await shop.db.withSchema(SCHEMA).table("customers").where({ id: c.id }).first()).password_hash as string;
			expect(hash).to.match(/^\$2[aby]\$/);

			for (const schema of [SCHEMA, LOG_SCHEMA]) {
				const tables: Array<{ table_name: string }> = (
					await shop.db.raw(`SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_type = 'BASE TABLE'`, [schema])
				).rows;
				expect(tables.map(t => t.table_name)).to.include.members(["outbox", "inbox", "idempotency_keys"]);
				for (const { table_name } of tables) {
					const dump = JSON.stringify(await shop.db.withSchema(schema).table(table_name).select("*"));
					expect(dump, `password in ${schema}.${table_name}`).to.not.include(password);
					if (!(schema === SCHEMA && table_name === "customers")) expect(dump, `hash in ${schema}.${table_name}`).to.not.include(hash);
				}
			}
			expect(JSON.stringify(shop.events.events)).to.not.include(password).and.not.include(hash);
		});
	});
});
