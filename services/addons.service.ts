/**
 * addons — additional services offered at checkout (gift wrapping, installation, extended
 * warranty …) for some products or categories, or for every cart when they name none. Priced per
 * order; chosen ones make the checkout's `servicesTotal`. A fresh shop offers gift wrapping.
 *
 * The checkout session calls `calculateAvailability` when its cart changes; it records
 * `addons.availability_calculated` when the answer differs from that checkout's previous one.
 * `available` and `price` change nothing.
 */
import Joi from "joi";
import type { Knex } from "knex";
import { randomUUID } from "node:crypto";
import type { Addon } from "../contracts/addons";
import { conflict, notFound, validationError } from "../contracts/errors";
import { CURRENCIES, moneySchema } from "../contracts/money";
import { page, pageSize } from "../contracts/paging";
import { DbMixin, writeKey, type Trx } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { defineService, ServiceThis } from "../infra/service";
import { addonView, cartHash, hashOf, isAvailable, offered } from "./addons/offer";
import { uuid } from "../contracts/ids";

const currency = Joi.string().valid(...CURRENCIES);
/** Cart lines as the checkout has them; only the product and category matter here. */
const lines = Joi.array()
	.items(Joi.object({ productId: uuid.required(), categoryId: uuid.allow(null) }).unknown(true))
	.max(200)
	.required();
const addonIds = Joi.array().items(uuid).max(50).unique();
const addonFields = {
	name: Joi.string().trim().min(1).max(100),
	description: Joi.string().trim().max(1000).allow(""),
	price: moneySchema,
	productIds: Joi.array().items(uuid).max(500).unique(),
	categoryIds: Joi.array().items(uuid).max(500).unique(),
	active: Joi.boolean()
};

interface Methods {
	activeAddons(trx?: Trx): Promise<Addon[]>;
	priced(ids: string[], lines: any[], currency: string | undefined): Promise<{ total: { amount: number; currency: string }; addons: any[] }>;
}

type This = ServiceThis<Methods>;

export default defineService<Methods>({
	name: "addons",
	mixins: [DbMixin("addons"), OutboxMixin()],

	actions: {
		list: {
			rest: "GET /api/admin/addons",
			params: Joi.object({ active: Joi.boolean(), page, pageSize }),
			async handler(ctx) {
				const { active, page, pageSize } = ctx.params;
				const where = (q: Knex.QueryBuilder) => (active === undefined ? q : q.where({ active }));
				const [{ n }] = await where(this.table("addons")).count<{ n: string }[]>("* as n");
				const rows = await where(this.table("addons")).orderBy([{ column: "name" }, { column: "id" }]).limit(pageSize).offset((page - 1) * pageSize);
				return { rows: rows.map(addonView), total: Number(n), page, pageSize };
			}
		},

		create: {
			rest: "POST /api/admin/addons",
			params: Joi.object({ ...addonFields, name: addonFields.name.required(), description: addonFields.description.default(""), price: moneySchema.required() }),
			async handler(ctx) {
				const p = ctx.params;
				return this.idempotent(writeKey(ctx, "addons.create", ctx.meta.user?.id ?? ""), "addons.create", async trx => {
					const [row] = await this.table("addons", trx)
						.insert({
							id: randomUUID(), name: p.name, description: p.description, price_amount: p.price.amount, currency: p.price.currency,
							product_ids: JSON.stringify(p.productIds ?? []), category_ids: JSON.stringify(p.categoryIds ?? []), active: p.active ?? true
						})
						.onConflict(this.knex.raw("(lower(name))"))
						.ignore()
						.returning("*");
					if (!row) throw conflict("NAME_TAKEN", `An add-on named '${p.name}' exists already`, { name: p.name });
					return addonView(row);
				});
			}
		},

		update: {
			rest: "PATCH /api/admin/addons/:id",
			params: Joi.object({ id: uuid.required(), ...addonFields }).min(2).messages({ "object.min": "Nothing to change: give at least one field" }),
			async handler(ctx) {
				const { id, ...c } = ctx.params;
				return this.transaction(async trx => {
					const row = await this.table("addons", trx).where({ id }).forUpdate().first();
					if (!row) throw notFound("Add-on", id);
					if (c.name !== undefined && (await this.table("addons", trx).whereRaw("lower(name) = lower(?)", [c.name]).whereNot({ id }).first())) {
						throw conflict("NAME_TAKEN", `An add-on named '${c.name}' exists already`, { name: c.name });
					}
					const update: Record<string, unknown> = { updated_at: this.knex.fn.now() };
					if (c.name !== undefined) update.name = c.name;
					if (c.description !== undefined) update.description = c.description;
					if (c.price !== undefined) Object.assign(update, { price_amount: c.price.amount, currency: c.price.currency });
					if (c.productIds !== undefined) update.product_ids = JSON.stringify(c.productIds);
					if (c.categoryIds !== undefined) update.category_ids = JSON.stringify(c.categoryIds);
					if (c.active !== undefined) update.active = c.active;
					const [after] = await this.table("addons", trx).where({ id }).update(update).returning("*");
					return addonView(after);
				});
			}
		},

		available: {
			params: Joi.object({ lines, currency }),
			async handler(ctx) {
				const { lines, currency } = ctx.params;
				return (await this.activeAddons()).filter(a => isAvailable(a, lines, currency)).map(offered);
			}
		},

		price: {
			params: Joi.object({ addonIds: addonIds.required(), lines, currency }),
			handler(ctx) {
				return this.priced(ctx.params.addonIds, ctx.params.lines, ctx.params.currency);
			}
		},

		calculateAvailability: {
			params: Joi.object({ checkoutId: uuid.required(), lines, selectedAddonIds: addonIds.default([]), currency }),
			async handler(ctx) {
				const { checkoutId, lines, selectedAddonIds, currency } = ctx.params;
				return this.transaction(async trx => {
					await trx.raw("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", [`${this.schemaName}.checkout:${checkoutId}`]);
					const available = (await this.activeAddons(trx)).filter(a => isAvailable(a, lines, currency));
					const selected = available.filter(a => selectedAddonIds.includes(a.id)).map(a => ({ id: a.id, name: a.name, price: a.price }));
					const total = { amount: selected.reduce((s, a) => s + a.price.amount, 0), currency: selected[0]?.price.currency ?? currency ?? "PLN" };
					const hash = cartHash(lines);
					const offer = available.map(offered);
					const answer = hashOf({ offer, selected, total });
					const before = await this.table("checkout_availability", trx).where({ checkout_id: checkoutId }).first();
					const changed = !before || before.answer_hash !== answer;
					if (changed) {
						await this.table("checkout_availability", trx)
							.insert({ checkout_id: checkoutId, cart_hash: hash, answer_hash: answer })
							.onConflict("checkout_id")
							.merge({ cart_hash: hash, answer_hash: answer, updated_at: this.knex.fn.now() });
						await this.record(trx, "addons.availability_calculated", checkoutId, { checkoutId, cartHash: hash, availableAddons: offer, selectedAddons: selected, totalServicesPrice: total }, ctx);
					}
					return { checkoutId, cartHash: hash, available: offer, selected, total, changed };
				});
			}
		}
	},

	methods: {
		async activeAddons(this: This, trx?: Trx) {
			return (await this.table("addons", trx).where({ active: true }).orderBy([{ column: "name" }, { column: "id" }])).map(addonView);
		},

		/** The total of the chosen add-ons, or a 422 naming each one that is unknown or not offered for these lines. */
		async priced(this: This, ids: string[], lines: any[], currency: string | undefined) {
			const rows: Addon[] = ids.length ? (await this.table("addons").whereIn("id", ids)).map(addonView) : [];
			const bad = ids.filter(id => {
				const a = rows.find(r => r.id === id);
				return !a || !isAvailable(a, lines, currency);
			});
			if (bad.length) {
				throw validationError("Some add-ons are not available for this cart", bad.map(id => ({ field: "addonIds", message: `Add-on ${id} is unknown or not available for these products` })));
			}
			const chosen = ids.map(id => rows.find(r => r.id === id)!);
			const currencies = new Set(chosen.map(a => a.price.currency));
			if (currencies.size > 1) throw validationError("Add-ons in different currencies", [{ field: "addonIds", message: `Add-ons are priced in ${[...currencies].join(" and ")}; give a currency` }]);
			const cur = chosen[0]?.price.currency ?? currency ?? "PLN";
			return { total: { amount: chosen.reduce((s, a) => s + a.price.amount, 0), currency: cur }, addons: chosen.map(a => ({ id: a.id, name: a.name, price: a.price })) };
		}
	}
});
