/**
 * promotions — automatic promotions and promo codes: percentage or fixed, a minimum cart total,
 * a product/category scope, a validity period, and (codes only) total and per-customer usage
 * limits. How they combine is one rule, written at the top of promotions/rules.ts.
 *
 * - `evaluate` answers what a cart's promotions take off, changing nothing.
 * - The checkout session calls `recalculate` when its cart changes, `applyCode` / `removeCode`
 *   when the customer enters or removes a code. Each records the differences from what this
 *   checkout had before as `promotion.applied` / `promotion.removed`; a code accepted by
 *   applyCode also records `promotion.code_applied`.
 * - The place-order saga takes a code's use with `redeem` and its compensation (or the
 *   cancel-order saga) gives it back with `release`. Both are idempotent by order and by key.
 *   A code with a total limit: a use is taken by one conditional UPDATE under the promotion's
 *   row lock, so concurrent redeems on any number of replicas never take more uses than the
 *   limit. A code without one (the usual popular code) has no counter to take: its uses are its
 *   redemptions, counted when read, so its redeems never wait for each other. See `lock`.
 */
import Joi from "joi";
import type { Knex } from "knex";
import { randomUUID } from "node:crypto";
import { conflict, notFound, unprocessable, validationError } from "../contracts/errors";
import { CURRENCIES, moneySchema } from "../contracts/money";
import { page, pageSize } from "../contracts/paging";
import type { EvaluateReply, Promotion } from "../contracts/promotions";
import { DbMixin, writeKey, type Trx } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { Ctx, defineService, ServiceThis } from "../infra/service";
import { evaluate, normalizeCode, promotionView } from "./promotions/rules";
import { uuid } from "../contracts/ids";

const idempotencyKey = Joi.string().max(200);
const currency = Joi.string().valid(...CURRENCIES);
const code = Joi.string().trim().min(1).max(40);
const line = Joi.object({
	productId: uuid.required(),
	categoryId: uuid.allow(null),
	quantity: Joi.number().integer().min(1).max(1_000_000).required(),
	unitPrice: moneySchema.required()
});
const cartFields = {
	customerId: uuid,
	lines: Joi.array().items(line).max(200).required(),
	currency: currency.required()
};
const promotionFields = {
	name: Joi.string().trim().min(1).max(100),
	kind: Joi.string().valid("percentage", "fixed"),
	value: Joi.number().integer().min(1).max(100_000_000_00),
	currency,
	minCartTotal: moneySchema.allow(null),
	productIds: Joi.array().items(uuid).max(500).unique(),
	categoryIds: Joi.array().items(uuid).max(500).unique(),
	validFrom: Joi.date().iso().allow(null),
	validTo: Joi.date().iso().allow(null),
	usageLimit: Joi.number().integer().min(1).max(1_000_000_000).allow(null),
	perCustomerLimit: Joi.number().integer().min(1).max(1_000_000_000).allow(null),
	active: Joi.boolean()
};

interface Methods {
	check(p: Partial<Promotion> & { validFrom?: unknown; validTo?: unknown }): void;
	evaluateCart(params: { customerId?: string; code?: string; lines: any[]; currency: string }, trx?: Trx): Promise<EvaluateReply>;
	checkLines(lines: any[], currency: string): void;
	syncCheckout(ctx: Ctx, checkoutId: string, result: EvaluateReply, trx: Trx): Promise<void>;
	recalculateCheckout(ctx: Ctx, accept?: (result: EvaluateReply, trx: Trx) => Promise<void>): Promise<any>;
	lock(trx: Trx, what: string, mode?: "shared" | "exclusive"): Promise<void>;
	withUses<R extends { id: string; code: string | null; usage_limit: unknown; uses: unknown }>(rows: R[], trx?: Trx): Promise<R[]>;
	releaseReply(row: any): any;
}

type This = ServiceThis<Methods>;

export default defineService<Methods>({
	name: "promotions",
	mixins: [DbMixin("promotions"), OutboxMixin()],

	actions: {
		list: {
			rest: "GET /api/admin/promotions",
			params: Joi.object({ active: Joi.boolean(), code, page, pageSize }),
			async handler(ctx) {
				const { active, code, page, pageSize } = ctx.params;
				const where = (q: Knex.QueryBuilder) => {
					if (active !== undefined) q.where({ active });
					if (code) q.where({ code: normalizeCode(code) });
					return q;
				};
				const [{ n }] = await where(this.table("promotions")).count<{ n: string }[]>("* as n");
				const rows = await where(this.table("promotions")).orderBy([{ column: "created_at", order: "desc" }, { column: "id" }]).limit(pageSize).offset((page - 1) * pageSize);
				return { rows: (await this.withUses(rows)).map(promotionView), total: Number(n), page, pageSize };
			}
		},

		get: {
			params: Joi.object({ id: uuid.required() }),
			async handler(ctx) {
				const row = await this.table("promotions").where({ id: ctx.params.id }).first();
				if (!row) throw notFound("Promotion", ctx.params.id);
				return promotionView((await this.withUses([row]))[0]!);
			}
		},

		create: {
			rest: "POST /api/admin/promotions",
			params: Joi.object({
				...promotionFields,
				name: promotionFields.name.required(),
				code: Joi.string().trim().pattern(/^[A-Za-z0-9_-]{3,40}$/).messages({ "string.pattern.base": "{{#label}} must be 3 to 40 letters, digits, '-' or '_'" }),
				kind: promotionFields.kind.required(),
				value: promotionFields.value.required(),
				currency: currency.default("PLN")
			}),
			async handler(ctx) {
				const p = ctx.params;
				this.check(p);
				const id = randomUUID();
				return this.idempotent(writeKey(ctx, "promotions.create", ctx.meta.user?.id ?? ""), "promotions.create", async trx => {
					const [row] = await this.table("promotions", trx)
						.insert({
							id, name: p.name, code: p.code ? normalizeCode(p.code) : null, kind: p.kind, value: p.value, currency: p.currency,
							min_cart_total: p.minCartTotal?.amount ?? null, product_ids: JSON.stringify(p.productIds ?? []), category_ids: JSON.stringify(p.categoryIds ?? []),
							valid_from: p.validFrom ?? null, valid_to: p.validTo ?? null, usage_limit: p.usageLimit ?? null, per_customer_limit: p.perCustomerLimit ?? null,
							active: p.active ?? true
						})
						.onConflict(this.knex.raw("(code) WHERE code IS NOT NULL"))
						.ignore()
						.returning("*");
					if (!row) throw conflict("PROMO_CODE_TAKEN", `The code '${normalizeCode(p.code)}' belongs to another promotion (codes are unique regardless of case)`, { code: normalizeCode(p.code) });
					return promotionView(row);
				});
			}
		},

		update: {
			rest: "PATCH /api/admin/promotions/:id",
			params: Joi.object({ id: uuid.required(), ...promotionFields }).min(2).messages({ "object.min": "Nothing to change: give at least one field" }),
			async handler(ctx) {
				const { id, ...changes } = ctx.params;
				return this.transaction(async trx => {
					// A new total limit counts the uses it limits: no redeem of the code may be half done
					// meanwhile (the lock is taken before the row's, in the order redeems take them).
					const code = changes.usageLimit !== undefined ? (await this.table("promotions", trx).where({ id }).first("code"))?.code : null;
					if (code) await this.lock(trx, `uses:${code}`);
					const row = await this.table("promotions", trx).where({ id }).forUpdate().first();
					if (!row) throw notFound("Promotion", id);
					this.check({ ...promotionView(row), ...changes });
					const columns: Record<string, string> = {
						name: "name", kind: "kind", value: "value", currency: "currency", validFrom: "valid_from", validTo: "valid_to",
						usageLimit: "usage_limit", perCustomerLimit: "per_customer_limit", active: "active"
					};
					const update: Record<string, unknown> = { updated_at: this.knex.fn.now() };
					for (const [field, column] of Object.entries(columns)) if (changes[field] !== undefined) update[column] = changes[field];
					if (changes.minCartTotal !== undefined) update.min_cart_total = changes.minCartTotal?.amount ?? null;
					if (changes.productIds !== undefined) update.product_ids = JSON.stringify(changes.productIds);
					if (changes.categoryIds !== undefined) update.category_ids = JSON.stringify(changes.categoryIds);
					if (code && changes.usageLimit !== null) {
						update.uses = this.table("redemptions", trx).where({ promotion_id: id, status: "redeemed" }).count("*");
					}
					const [after] = await this.table("promotions", trx).where({ id }).update(update).returning("*");
					return promotionView((await this.withUses([after], trx))[0]!);
				});
			}
		},

		evaluate: {
			params: Joi.object({ ...cartFields, code }),
			handler(ctx) {
				return this.evaluateCart(ctx.params);
			}
		},

		recalculate: {
			params: Joi.object({ ...cartFields, code, checkoutId: uuid.required() }),
			handler(ctx) {
				return this.recalculateCheckout(ctx);
			}
		},

		applyCode: {
			params: Joi.object({ ...cartFields, code: code.required(), checkoutId: uuid.required() }),
			async handler(ctx) {
				const { checkoutId } = ctx.params;
				const entered = normalizeCode(ctx.params.code);
				return this.recalculateCheckout(ctx, async (result, trx) => {
					const status = result.codeStatus;
					if (status === "used_up") throw conflict("PROMO_CODE_USED_UP", `The code '${entered}' has been used up`, { code: entered, codeStatus: status });
					if (status !== "applied") {
						const why = { unknown: "is not a code of this shop", expired: "has expired", not_applicable: "does not apply to this cart" }[status as "unknown" | "expired" | "not_applicable"];
						throw unprocessable("PROMO_CODE_INVALID", `The code '${entered}' ${why}`, { field: "code", code: entered, codeStatus: status });
					}
					const applied = result.promotions.find(p => p.code === entered)!;
					await this.record(trx, "promotion.code_applied", checkoutId, { checkoutId, code: entered, promotionId: applied.promotionId, discount: applied.discount }, ctx);
				});
			}
		},

		removeCode: {
			params: Joi.object({ ...cartFields, checkoutId: uuid.required() }),
			handler(ctx) {
				return this.recalculateCheckout(ctx);
			}
		},

		redeem: {
			params: Joi.object({ orderId: uuid.required(), customerId: uuid.required(), code: code.required(), idempotencyKey }),
			async handler(ctx) {
				const { orderId, customerId } = ctx.params;
				const entered = normalizeCode(ctx.params.code);
				return this.idempotent(ctx.params.idempotencyKey, "promotions.redeem", async trx => {
					await this.lock(trx, `order:${orderId}`);
					const held = await this.table("redemptions", trx).where({ order_id: orderId }).first();
					if (held?.status === "redeemed" && held.code === entered) return { redemptionId: held.id, promotionId: held.promotion_id, orderId, code: entered };
					if (held) {
						const what = held.status === "redeemed" ? `redeemed the code '${held.code}' already` : "released its promotion already (a compensated or cancelled order)";
						throw conflict("INVALID_TRANSITION", `Order ${orderId} ${what}`, { orderId, code: held.code, status: held.status });
					}
					// Read after the shared lock: a limit set meanwhile (it takes the lock exclusively) is seen.
					await this.lock(trx, `uses:${entered}`, "shared");
					const row = await this.table("promotions", trx).where({ code: entered }).first();
					const promotion = row ? promotionView(row) : null;
					const now = new Date();
					if (!promotion || !promotion.active || (promotion.validFrom && now < new Date(promotion.validFrom)) || (promotion.validTo && now > new Date(promotion.validTo))) {
						throw conflict("PROMO_CODE_INVALID", `The code '${entered}' is not valid now`, { code: entered });
					}
					if (promotion.perCustomerLimit !== null) {
						// One customer's redeems of one promotion are counted one at a time (two orders at once cannot both take the last use).
						await this.lock(trx, `redeem:${promotion.id}:${customerId}`);
						const [{ n }] = await this.table("redemptions", trx).where({ promotion_id: promotion.id, customer_id: customerId, status: "redeemed" }).count<{ n: string }[]>("* as n");
						if (Number(n) >= promotion.perCustomerLimit) {
							throw conflict("PROMO_CODE_USED_UP", `You have used the code '${entered}' ${promotion.perCustomerLimit} time(s), as many as it allows`, { code: entered, limit: "perCustomer" });
						}
					}
					const redemptionId = randomUUID();
					await this.table("redemptions", trx).insert({ id: redemptionId, order_id: orderId, promotion_id: promotion.id, customer_id: customerId, code: entered, status: "redeemed" });
					await this.record(trx, "promotion.redeemed", orderId, { orderId, customerId, promotionId: promotion.id, code: entered, redemptionId }, ctx);
					// A code without a total limit has nothing more to take: its uses are counted from the
					// redemptions, so a popular code is not one hot row that every checkout waits for.
					if (promotion.usageLimit === null) return { redemptionId, promotionId: promotion.id, orderId, code: entered };
					// A limited code's use is taken last and atomically: still active, and under the limit
					// on every replica. Concurrent redeems of it wait for each other for this statement and the commit.
					const taken = await this.table("promotions", trx)
						.where({ id: promotion.id, active: true })
						.andWhere(q => q.whereNull("usage_limit").orWhere("uses", "<", this.knex.ref("usage_limit")))
						.increment("uses", 1)
						.returning(["uses", "active"]);
					if (taken.length === 0) {
						const latest = await this.table("promotions", trx).where({ id: promotion.id }).first();
						if (!latest?.active) throw conflict("PROMO_CODE_INVALID", `The code '${entered}' is not valid now`, { code: entered });
						throw conflict("PROMO_CODE_USED_UP", `The code '${entered}' has been used up`, { code: entered, limit: "total" });
					}
					return { redemptionId, promotionId: promotion.id, orderId, code: entered };
				});
			}
		},

		release: {
			params: Joi.object({ orderId: uuid.required(), reason: Joi.string().max(200).allow(null, ""), idempotencyKey }),
			async handler(ctx) {
				const { orderId } = ctx.params;
				const reason = ctx.params.reason || null;
				return this.idempotent(ctx.params.idempotencyKey, "promotions.release", async trx => {
					await this.lock(trx, `order:${orderId}`);
					const held = await this.table("redemptions", trx).where({ order_id: orderId }).first();
					if (!held) {
						// Released before any redeem arrived (a compensation overtaking a slow step): a late redeem is refused.
						const [tombstone] = await this.table("redemptions", trx).insert({ id: randomUUID(), order_id: orderId, status: "released", reason, released_at: this.knex.fn.now() }).returning("*");
						return this.releaseReply(tombstone);
					}
					if (held.status === "released") return this.releaseReply(held);
					const [after] = await this.table("redemptions", trx).where({ id: held.id }).update({ status: "released", reason, released_at: this.knex.fn.now() }).returning("*");
					// Only a limited code keeps a counter (see redeem); a released redemption no longer counts for either.
					await this.lock(trx, `uses:${held.code}`, "shared");
					await this.table("promotions", trx).where({ id: held.promotion_id }).whereNotNull("usage_limit").decrement("uses", 1);
					await this.record(trx, "promotion.released", orderId, { orderId, customerId: held.customer_id, promotionId: held.promotion_id, code: held.code, redemptionId: held.id, reason }, ctx);
					return this.releaseReply(after);
				});
			}
		}
	},

	methods: {
		/** The rules a promotion must keep that joi cannot see field by field. */
		check(p) {
			const refuse = (field: string, message: string) => {
				throw validationError(message, [{ field, message }]);
			};
			if (p.kind === "percentage" && (p.value ?? 0) > 100) refuse("value", "A percentage is at most 100");
			if (p.minCartTotal && p.minCartTotal.currency !== p.currency) refuse("minCartTotal.currency", `minCartTotal is in ${p.minCartTotal.currency}, the promotion in ${p.currency}`);
			if (p.validFrom && p.validTo && new Date(p.validTo as string) <= new Date(p.validFrom as string)) refuse("validTo", "validTo must be after validFrom");
			if (!p.code && (p.usageLimit || p.perCustomerLimit)) refuse(p.usageLimit ? "usageLimit" : "perCustomerLimit", "Usage limits count uses of a code; a promotion without a code has none");
		},

		checkLines(lines: any[], currency: string) {
			const bad = lines.map((l, i) => ({ l, i })).filter(({ l }) => l.unitPrice.currency !== currency);
			if (bad.length) {
				throw validationError("Every line must be in the cart's currency", bad.map(({ l, i }) => ({ field: `lines.${i}.unitPrice.currency`, message: `${l.unitPrice.currency}, not ${currency}` })));
			}
		},

		async evaluateCart(this: This, params, trx) {
			this.checkLines(params.lines, params.currency);
			const automatic = (await this.table("promotions", trx).whereNull("code").where({ active: true })).map(promotionView);
			let candidate = null;
			if (params.code) {
				const row = await this.table("promotions", trx).where({ code: normalizeCode(params.code) }).first();
				let customerUses = 0;
				if (row && params.customerId) {
					const [{ n }] = await this.table("redemptions", trx).where({ promotion_id: row.id, customer_id: params.customerId, status: "redeemed" }).count<{ n: string }[]>("* as n");
					customerUses = Number(n);
				}
				candidate = { promotion: row ? promotionView(row) : null, customerUses };
			}
			return evaluate(automatic, candidate, params.lines, params.currency, new Date());
		},

		/** Records what changed since this checkout's last answer: promotion.applied for new or changed discounts, promotion.removed for gone ones. */
		async syncCheckout(this: This, ctx: Ctx, checkoutId: string, result: EvaluateReply, trx: Trx) {
			const { changed, gone: removed } = promotionChanges(await this.table("checkout_promotions", trx).where({ checkout_id: checkoutId }), result);
			for (const p of changed) {
				await this.table("checkout_promotions", trx)
					.insert({ checkout_id: checkoutId, promotion_id: p.promotionId, code: p.code ?? null, discount_amount: p.discount.amount, currency: p.discount.currency })
					.onConflict(["checkout_id", "promotion_id"])
					.merge({ discount_amount: p.discount.amount, currency: p.discount.currency, updated_at: this.knex.fn.now() });
				await this.record(trx, "promotion.applied", checkoutId, { checkoutId, promotionId: p.promotionId, name: p.name, code: p.code ?? null, kind: p.kind, value: p.value, discount: p.discount }, ctx);
			}
			for (const gone of removed) {
				await this.table("checkout_promotions", trx).where({ checkout_id: checkoutId, promotion_id: gone.promotion_id }).delete();
				await this.record(trx, "promotion.removed", checkoutId, { checkoutId, promotionId: gone.promotion_id, code: gone.code }, ctx);
			}
		},

		/** A transaction-scoped lock on one checkout or order, across replicas. */
		/** The checkout's cart evaluated under its lock; `accept` may refuse the result or add to it; then promotion.applied / removed for what changed. */
		async recalculateCheckout(this: This, ctx: Ctx, accept?: (result: EvaluateReply, trx: Trx) => Promise<void>) {
			const { checkoutId } = ctx.params;
			if (!accept) {
				// The usual call (every refresh of a session, place among them) changes nothing here: then
				// it is answered from two reads, with no transaction and no lock. Only a change is written,
				// under the checkout's lock, and evaluated again there.
				const [result, stored] = await Promise.all([
					this.evaluateCart(ctx.params),
					this.table("checkout_promotions").where({ checkout_id: checkoutId })
				]);
				const { changed, gone } = promotionChanges(stored, result);
				if (changed.length === 0 && gone.length === 0) return { checkoutId, ...result };
			}
			return this.transaction(async trx => {
				await this.lock(trx, `checkout:${checkoutId}`);
				const result = await this.evaluateCart(ctx.params, trx);
				await accept?.(result, trx);
				await this.syncCheckout(ctx, checkoutId, result, trx);
				return { checkoutId, ...result };
			});
		},

		/**
		 * A transaction-long advisory lock. `uses:<code>` is taken shared by redeems and releases of a
		 * code (they do not wait for each other) and exclusively by setting its total limit, so the
		 * count that starts from has every redeem in or out. Only a limited code keeps `uses` in its row.
		 */
		async lock(this: This, trx: Trx, what: string, mode: "shared" | "exclusive" = "exclusive") {
			const fn = mode === "shared" ? "pg_advisory_xact_lock_shared" : "pg_advisory_xact_lock";
			await trx.raw(`SELECT ${fn}(hashtextextended(?, 0))`, [`${this.schemaName}.${what}`]);
		},

		/** Rows of codes without a total limit get their uses counted from the redemptions (one query for all of them). */
		async withUses(this: This, rows, trx?: Trx) {
			const counted = rows.filter(r => r.code !== null && r.usage_limit === null).map(r => r.id);
			if (counted.length === 0) return rows;
			const counts = await this.table("redemptions", trx).whereIn("promotion_id", counted).where({ status: "redeemed" }).groupBy("promotion_id").select("promotion_id").count<{ promotion_id: string; n: string }[]>("* as n");
			const uses = new Map(counts.map(c => [c.promotion_id, Number(c.n)]));
			return rows.map(r => (counted.includes(r.id) ? { ...r, uses: uses.get(r.id) ?? 0 } : r));
		},

		releaseReply(row: any) {
			const released = !!row.promotion_id;
			return { orderId: row.order_id, released, status: released ? "released" : "none", redemptionId: released ? row.id : null, promotionId: row.promotion_id ?? null };
		}
	}
});

/**
 * Against a checkout's stored discounts (its checkout_promotions rows): the promotions just
 * computed that are new or changed, in their order, and the stored rows no longer computed.
 */
function promotionChanges(stored: any[], result: EvaluateReply) {
	const changed = result.promotions.filter(p => !stored.some(r => r.promotion_id === p.promotionId && Number(r.discount_amount) === p.discount.amount && r.currency === p.discount.currency));
	const gone = stored.filter(r => !result.promotions.some(p => p.promotionId === r.promotion_id));
	return { changed, gone };
}
