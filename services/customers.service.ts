/**
 * customers — accounts, credentials, email verification, shipping addresses and GDPR erasure.
 *
 * Registration stores a bcrypt hash of the password (never the password) and a verification
 * token of which only the sha256 is kept; the token itself travels once, in
 * `customer.verification_requested`, to notifications, which emails it. Login answers a JWT
 * the gateway verifies. The first admin is created at start-up from ADMIN_EMAIL /
 * ADMIN_PASSWORD. The rules live in `customers/rules.ts`, hashing and tokens in
 * `customers/credentials.ts`, addresses and erasure in `customers/addresses.ts` with the
 * postal code formats in `customers/postal-codes.ts`.
 *
 * Erasure asks orders whether the customer has an order still under way (`orders.countOpen`),
 * then, in one transaction, deletes the addresses, overwrites the personal data (the id stays:
 * orders keep pointing at it), spends the tokens, strips the personal fields from the events
 * already published, and records `customer.erased {customerId}`; orders anonymizes its copies
 * on that event.
 */
import Joi from "joi";
import { randomUUID } from "node:crypto";
import { conflict, forbidden, notFound, unauthorized } from "../contracts/errors";
import { page, pageSize } from "../contracts/paging";
import { DbMixin, writeKey, type Trx } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { Ctx, defineService, ServiceThis } from "../infra/service";
import { readSettings, settings } from "../infra/settings";
import {
	AddressRow,
	assertPostalAddress,
	erasedProfile,
	FINISHED_ORDER_STATUSES,
	MAX_ADDRESSES,
	PERSONAL_PAYLOAD_FIELDS,
	toAddress,
	tooManyAddresses
} from "./customers/addresses";
import { hashPassword, signAccessToken, verifyPassword } from "./customers/credentials";
import {
	assertPassword,
	CustomerRow,
	hashToken,
	invalidCredentials,
	judgeToken,
	newVerificationToken,
	normalizeEmail,
	passwordProblems,
	toCustomer,
	TokenRow,
	tokenRefusal
} from "./customers/rules";
import { uuid } from "../contracts/ids";

const idempotencyKey = Joi.string().max(200);
const personName = Joi.string().trim().min(1).max(100);
const email = Joi.string().trim().lowercase().max(320).email({ tlds: false });
const text = (max: number) => Joi.string().trim().min(1).max(max);
/** A shipping address's fields, as stored (`addAddress`) and as checked for an inline checkout address (`validateAddress`). */
const addressFields = () => ({
	recipientName: text(200).required(),
	street: text(200).required(),
	city: text(100).required(),
	state: Joi.string().trim().max(100).allow("", null),
	postalCode: text(20).required(),
	country: text(60).required()
});

interface User {
	id: string;
	role: string;
}

interface Methods {
	keyOf(ctx: Ctx, action: string, scope: string): string;
	byId(id: string, trx?: Trx, forUpdate?: boolean): Promise<CustomerRow | undefined>;
	byEmail(email: string, trx?: Trx): Promise<CustomerRow | undefined>;
	requestVerification(ctx: Ctx, trx: Trx, row: CustomerRow): Promise<void>;
	currentUser(ctx: Ctx): User;
	liveCustomer(id: string, trx?: Trx, forUpdate?: boolean): Promise<CustomerRow>;
	bootstrapAdmin(): Promise<void>;
}

type This = ServiceThis<Methods>;

export default defineService<Methods>({
	name: "customers",
	mixins: [DbMixin("customers"), OutboxMixin()],

	actions: {
		/** A new, unverified customer; a verification email follows (customer.verification_requested). */
		register: {
			rest: "POST /api/auth/register",
			params: Joi.object({
				email: email.required(),
				password: Joi.string().required(),
				firstName: personName.required(),
				lastName: personName.required(),
				idempotencyKey
			}),
			async handler(ctx) {
				const p = ctx.params;
				const address = normalizeEmail(p.email);
				assertPassword(p.password);
				const passwordHash = await hashPassword(p.password); // outside the transaction: it takes a while
				return this.idempotent(this.keyOf(ctx, "customers.register", address), "customers.register", async trx => {
					// ON CONFLICT waits for a concurrent registration of the same address, then does nothing.
					const [row]: CustomerRow[] = await this.table("customers", trx)
						.insert({ id: randomUUID(), email: address, password_hash: passwordHash, first_name: p.firstName, last_name: p.lastName, role: "customer" })
						.onConflict()
						.ignore()
						.returning("*");
					if (!row) throw conflict("EMAIL_TAKEN", "An account with this email already exists", { field: "email" });
					await this.record(trx, "customer.registered", row.id, {
						customerId: row.id, email: row.email, firstName: row.first_name, lastName: row.last_name,
						createdAt: new Date(row.created_at).toISOString()
					}, ctx);
					await this.recordIntegration(trx, "CustomerRegisteredNotification", row.id, { customerId: row.id, email: row.email, firstName: row.first_name }, ctx);
					await this.requestVerification(ctx, trx, row);
					return toCustomer(row);
				});
			}
		},

		/** The emailed token proves the address: the customer becomes verified, every other token of theirs is spent. */
		verifyEmail: {
			rest: "POST /api/auth/verify-email",
			params: Joi.object({ token: Joi.string().trim().min(1).max(200).required(), idempotencyKey }),
			async handler(ctx) {
				const tokenHash = hashToken(ctx.params.token);
				return this.idempotent(this.keyOf(ctx, "customers.verifyEmail", tokenHash), "customers.verifyEmail", async trx => {
					const token: TokenRow | undefined = await this.table("email_verification_tokens", trx).where({ token_hash: tokenHash }).forUpdate().first();
					const verdict = judgeToken(token, new Date());
					if (verdict !== "valid") throw tokenRefusal(verdict);
					const row = await this.byId(token!.customer_id, trx, true);
					if (!row || row.erased_at) throw tokenRefusal("INVALID_TOKEN");
					const [verified]: CustomerRow[] = await this.table("customers", trx)
						.where({ id: row.id })
						.update({ email_verified: true, email_verified_at: this.knex.raw("coalesce(email_verified_at, now())"), updated_at: this.knex.fn.now() })
						.returning("*");
					await this.table("email_verification_tokens", trx).where({ customer_id: row.id }).whereNull("used_at").update({ used_at: this.knex.fn.now() });
					// The published copies of the token are of no use any more: keep none in the outbox.
					await this.redactOutbox(trx, { aggregateIds: [row.id], eventNames: ["customer.verification_requested"], sentOnly: true }, { remove: ["token"] });
					await this.record(trx, "customer.email_verified", row.id, {
						customerId: row.id, email: row.email, verifiedAt: new Date(verified!.email_verified_at!).toISOString()
					}, ctx);
					return toCustomer(verified!);
				});
			}
		},

		/** `{ token, customer }`; the same 401 for an unknown email and a wrong password. */
		login: {
			rest: "POST /api/auth/login",
			params: Joi.object({ email: Joi.string().trim().max(320).required(), password: Joi.string().max(1024).required() }),
			async handler(ctx) {
				const row = await this.byEmail(normalizeEmail(ctx.params.email));
				const usable = row && !row.erased_at ? row : undefined;
				const ok = await verifyPassword(ctx.params.password, usable?.password_hash);
				if (!usable || !ok) throw invalidCredentials();
				return { token: signAccessToken(usable, settings), customer: toCustomer(usable) };
			}
		},

		/** One customer (internal: checkout reads `emailVerified`); a customer asking for another gets 404. */
		get: {
			params: Joi.object({ id: uuid.required() }),
			async handler(ctx) {
				const { id } = ctx.params;
				const user = ctx.meta.user;
				if (user && user.role !== "admin" && user.id !== id) throw notFound("Customer", id);
				const row = await this.byId(id);
				if (!row || row.erased_at) throw notFound("Customer", id);
				return toCustomer(row);
			}
		},

		/** The logged-in user's profile. */
		me: {
			rest: "GET /api/me",
			params: Joi.object({}),
			async handler(ctx) {
				const user = ctx.meta.user;
				if (!user) throw unauthorized();
				const row = await this.byId(user.id);
				if (!row || row.erased_at) throw notFound("Customer", user.id);
				return toCustomer(row);
			}
		},

		/** Changes the logged-in user's names; customer.updated lists what changed. */
		updateMe: {
			rest: "PATCH /api/me",
			params: Joi.object({ firstName: personName, lastName: personName, idempotencyKey }).or("firstName", "lastName"),
			async handler(ctx) {
				const user = ctx.meta.user;
				if (!user) throw unauthorized();
				const { firstName, lastName } = ctx.params;
				return this.idempotent(this.keyOf(ctx, "customers.updateMe", user.id), "customers.updateMe", async trx => {
					const row = await this.byId(user.id, trx, true);
					if (!row || row.erased_at) throw notFound("Customer", user.id);
					const patch: Record<string, string> = {};
					if (firstName !== undefined && firstName !== row.first_name) patch.first_name = firstName;
					if (lastName !== undefined && lastName !== row.last_name) patch.last_name = lastName;
					if (Object.keys(patch).length === 0) return toCustomer(row);
					const [updated]: CustomerRow[] = await this.table("customers", trx)
						.where({ id: row.id })
						.update({ ...patch, updated_at: this.knex.fn.now() })
						.returning("*");
					await this.record(trx, "customer.updated", row.id, {
						customerId: row.id, firstName: updated!.first_name, lastName: updated!.last_name,
						changedFields: Object.keys(patch).map(k => (k === "first_name" ? "firstName" : "lastName")),
						updatedAt: new Date(updated!.updated_at).toISOString()
					}, ctx);
					return toCustomer(updated!);
				});
			}
		},

		/**
		 * A new verification email for an unverified account. Always `{ ok: true }`, so the answer
		 * does not tell whether the address has an account; at most one email per
		 * VERIFICATION_RESEND_INTERVAL_MS (default a minute), so nobody can flood an inbox through us.
		 */
		resendVerification: {
			rest: "POST /api/auth/resend-verification",
			params: Joi.object({ email: email.required() }),
			async handler(ctx) {
				const address = normalizeEmail(ctx.params.email);
				const interval = readSettings().verificationResendIntervalMs;
				await this.transaction(async trx => {
					const found = await this.byEmail(address, trx);
					if (!found) return;
					const row = (await this.byId(found.id, trx, true))!; // one resend at a time per customer
					if (row.email_verified || row.erased_at) return;
					const last = await this.table("email_verification_tokens", trx).where({ customer_id: row.id }).max<{ at: Date | null }>("created_at as at").first();
					if (last?.at && Date.now() - new Date(last.at).getTime() < interval) return;
					await this.requestVerification(ctx, trx, row);
				});
				return { ok: true };
			}
		},

		/** A new shipping address of the logged-in customer; the postal code must fit the country. */
		addAddress: {
			rest: "POST /api/me/addresses",
			params: Joi.object({ ...addressFields(), idempotencyKey }),
			async handler(ctx) {
				const user = this.currentUser(ctx);
				const p = ctx.params;
				const { country, postalCode } = assertPostalAddress(p.country, p.postalCode);
				return this.idempotent(this.keyOf(ctx, "customers.addAddress", user.id), "customers.addAddress", async trx => {
					await this.liveCustomer(user.id, trx, true); // one add at a time per customer: the limit holds
					const [{ n }] = await this.table("addresses", trx).where({ customer_id: user.id }).count<{ n: string }[]>("* as n");
					if (Number(n) >= MAX_ADDRESSES) throw tooManyAddresses();
					const [row]: AddressRow[] = await this.table("addresses", trx)
						.insert({
							id: randomUUID(), customer_id: user.id, recipient_name: p.recipientName, street: p.street, city: p.city,
							state: p.state || null, postal_code: postalCode, country
						})
						.returning("*");
					// No name, street or city in the event: events are kept and relayed, the address is nobody else's business.
					await this.record(trx, "customer.address_added", user.id, { customerId: user.id, addressId: row!.id, country }, ctx);
					return toAddress(row!);
				});
			}
		},

		/** An address checked as `addAddress` checks it, not stored (checkout's inline address): answers it in canonical form or 422 naming the field. */
		validateAddress: {
			params: Joi.object(addressFields()),
			handler(ctx) {
				const p = ctx.params;
				const { country, postalCode } = assertPostalAddress(p.country, p.postalCode);
				return { recipientName: p.recipientName, street: p.street, city: p.city, state: p.state || null, postalCode, country };
			}
		},

		/** The logged-in customer's addresses, oldest first (an admin or an internal caller may name the customer). */
		listAddresses: {
			rest: "GET /api/me/addresses",
			params: Joi.object({
				customerId: uuid,
				page,
				pageSize
			}),
			async handler(ctx) {
				const { page, pageSize } = ctx.params;
				const user = ctx.meta.user;
				const customerId: string | undefined = user && user.role !== "admin" ? user.id : (ctx.params.customerId ?? user?.id);
				if (!customerId) throw unauthorized();
				await this.liveCustomer(customerId);
				const mine = () => this.table("addresses").where({ customer_id: customerId });
				const [{ n }] = await mine().count<{ n: string }[]>("* as n");
				const rows: AddressRow[] = await mine()
					.orderBy([{ column: "created_at" }, { column: "id" }])
					.limit(pageSize)
					.offset((page - 1) * pageSize);
				return { rows: rows.map(toAddress), total: Number(n), page, pageSize };
			}
		},

		/** One address (checkout reads the chosen one): a customer's own only, another's answers 404; admins and internal callers any. */
		getAddress: {
			params: Joi.object({ id: uuid.required() }),
			async handler(ctx) {
				const user = ctx.meta.user;
				const q = this.table("addresses").where({ id: ctx.params.id });
				if (user && user.role !== "admin") q.where({ customer_id: user.id });
				const row: AddressRow | undefined = await q.first();
				if (!row) throw notFound("Address", ctx.params.id);
				return toAddress(row);
			}
		},

		/**
		 * Deletes one of the logged-in customer's addresses; another customer's answers 404. A repeat with the same Idempotency-Key
		 * (the first answer lost on the way) answers the first deletion again, not 404; without a
		 * key, a repeat answers 404: the address is gone.
		 */
		deleteAddress: {
			rest: "DELETE /api/me/addresses/:id",
			params: Joi.object({ id: uuid.required(), idempotencyKey }),
			async handler(ctx) {
				const user = this.currentUser(ctx);
				return this.idempotent(this.keyOf(ctx, "customers.deleteAddress", `${user.id}:${ctx.params.id}`), "customers.deleteAddress", async trx => {
					const deleted = await this.table("addresses", trx).where({ id: ctx.params.id, customer_id: user.id }).delete();
					if (deleted === 0) throw notFound("Address", ctx.params.id);
					return { id: ctx.params.id, deleted: true };
				});
			}
		},

		/**
		 * GDPR erasure of the logged-in customer (`confirmation` must be exactly true). Refused with
		 * 409 PENDING_ORDERS while one of their orders is still under way; afterwards the login, the
		 * profile and the addresses are gone, and `customer.erased` carries only the (kept) id.
		 * A repeat answers 404: there is nobody left to erase.
		 */
		erase: {
			rest: "DELETE /api/me",
			params: Joi.object({
				confirmation: Joi.boolean().strict().valid(true).required().messages({ "any.only": "confirmation must be true to erase the account" })
			}),
			async handler(ctx) {
				const user = this.currentUser(ctx);
				if (user.role === "admin") throw forbidden("An admin account is not erased through this action");
				await this.liveCustomer(user.id);
				// Asked before the transaction: no remote call while it holds a connection.
				const { count } = await ctx.call<{ count: number }, { customerId: string }>("orders.countOpen", { customerId: user.id });
				if (count > 0) {
					throw conflict("PENDING_ORDERS", "This account has orders still under way; it can be erased once they are shipped, delivered or cancelled", {
						openOrders: count,
						finishedStatuses: FINISHED_ORDER_STATUSES
					});
				}
				return this.transaction(async trx => {
					const row = await this.liveCustomer(user.id, trx, true);
					await this.table("addresses", trx).where({ customer_id: row.id }).delete();
					const [erased]: CustomerRow[] = await this.table("customers", trx)
						.where({ id: row.id })
						.update({ ...erasedProfile(row.id), erased_at: this.knex.fn.now(), updated_at: this.knex.fn.now() })
						.returning("*");
					await this.table("email_verification_tokens", trx).where({ customer_id: row.id }).whereNull("used_at").update({ used_at: this.knex.fn.now() });
					// The events already published keep no personal data here (those not yet sent still go out as they are).
					await this.redactOutbox(trx, { aggregateIds: [row.id], sentOnly: true }, { remove: [...PERSONAL_PAYLOAD_FIELDS] });
					// The stored answers of earlier requests (register, updateMe, addAddress…) repeat personal data too.
					await this.forgetAnswers(trx, ["id", "customerId"], row.id);
					await this.record(trx, "customer.erased", row.id, { customerId: row.id }, ctx);
					return { customerId: row.id, erasedAt: new Date(erased!.erased_at!).toISOString() };
				});
			}
		}
	},

	methods: {
		/** The caller's key, or the gateway's Idempotency-Key header scoped to the action and who it concerns, or the request's own id. */
		keyOf(ctx: Ctx, action: string, scope: string): string {
			return writeKey(ctx, action, scope);
		},

		async byId(this: This, id: string, trx?: Trx, forUpdate = false) {
			const q = this.table("customers", trx).where({ id });
			if (forUpdate && trx) q.forUpdate();
			return q.first();
		},

		/** The logged-in user (401 without one). */
		currentUser(ctx: Ctx): User {
			const user = ctx.meta.user;
			if (!user) throw unauthorized();
			return user;
		},

		/** A customer who is not erased, else 404 (an erased customer's still valid JWT reaches nothing). */
		async liveCustomer(this: This, id: string, trx?: Trx, forUpdate = false) {
			const row = await this.byId(id, trx, forUpdate);
			if (!row || row.erased_at) throw notFound("Customer", id);
			return row;
		},

		async byEmail(this: This, address: string, trx?: Trx) {
			return this.table("customers", trx).whereRaw("lower(email) = ?", [address]).first();
		},

		/** Issues a token (only its hash is stored) and records the event that carries it to notifications. */
		async requestVerification(this: This, ctx: Ctx, trx: Trx, row: CustomerRow) {
			const ttl = readSettings().verificationTtlMs;
			const { token, tokenHash, expiresAt } = newVerificationToken(new Date(), ttl);
			await this.table("email_verification_tokens", trx).insert({ id: randomUUID(), customer_id: row.id, token_hash: tokenHash, expires_at: expiresAt });
			await this.record(trx, "customer.verification_requested", row.id, {
				customerId: row.id, email: row.email, firstName: row.first_name, token, expiresAt: expiresAt.toISOString()
			}, ctx);
		},

		/**
		 * The first admin, from ADMIN_EMAIL / ADMIN_PASSWORD. Idempotent across restarts and across
		 * replicas starting together: the unique index on lower(email) lets one insert win and the
		 * others do nothing. An existing account with that email is left as it is (never promoted).
		 */
		async bootstrapAdmin(this: This) {
			const { adminEmail, adminPassword } = settings;
			if (!adminEmail || !adminPassword) return;
			const address = normalizeEmail(adminEmail);
			if (await this.byEmail(address)) return;
			if (passwordProblems(adminPassword).length > 0) this.logger.warn("ADMIN_PASSWORD does not meet the password rules; the admin is created anyway");
			const passwordHash = await hashPassword(adminPassword);
			const inserted = await this.table("customers")
				.insert({
					id: randomUUID(), email: address, password_hash: passwordHash, first_name: "Admin", last_name: "Admin",
					role: "admin", email_verified: true, email_verified_at: this.knex.fn.now()
				})
				.onConflict()
				.ignore()
				.returning("id");
			if (inserted.length > 0) this.logger.info(`Admin account ${address} created`);
		}
	},

	async started() {
		if (!settings.jwtSecret) throw new Error("JWT_SECRET must be set: customers cannot issue access tokens without it");
		await this.schemaReady;
		await this.bootstrapAdmin();
	}
});
