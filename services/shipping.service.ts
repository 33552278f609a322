/**
 * shipping — the shop's shipping methods (price, countries, delivery window, optional free-over
 * threshold and express fee) and quotes for a cart. A fresh shop has a courier and a
 * parcel-locker method (migration 002). Admins create and change methods; a method is retired
 * with `active: false`, never deleted, so orders keep pointing at it.
 *
 * The checkout session calls `selectMethod`, `provideAddress` and `selectDeliveryDate` when the
 * customer chooses; each checks the choice and records `shipping.method_selected`,
 * `shipping.address_provided` or `shipping.delivery_date_selected` through the outbox. Shipping
 * keeps no per-checkout state: the checkout session holds what was chosen.
 */
import Joi from "joi";
import { randomUUID } from "node:crypto";
import { conflict, notFound, validationError } from "../contracts/errors";
import { moneySchema } from "../contracts/money";
import type { ShippingMethod } from "../contracts/shipping";
import { DbMixin, writeKey } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { Ctx, defineService, ServiceThis } from "../infra/service";
import { methodView, quote, todayUtc } from "./shipping/methods";
import { uuid } from "../contracts/ids";

const country = Joi.string().trim().uppercase().pattern(/^[A-Z]{2}$/).messages({ "string.pattern.base": "{{#label}} must be a two-letter ISO country code" });
const isoDate = Joi.string()
	.pattern(/^\d{4}-\d{2}-\d{2}$/)
	.custom((v: string, helpers) => (new Date(`${v}T00:00:00Z`).toISOString().slice(0, 10) === v ? v : helpers.error("any.invalid")))
	.messages({ "string.pattern.base": "{{#label}} must be a date YYYY-MM-DD", "any.invalid": "{{#label}} is not a calendar date" });
const deliveryDays = Joi.object({
	min: Joi.number().integer().min(0).max(60).required(),
	max: Joi.number().integer().min(0).max(90).required() // and ≥ min: checked by checkMethod
});
const methodFields = {
	name: Joi.string().trim().min(1).max(100),
	carrier: Joi.string().trim().min(1).max(100),
	price: moneySchema,
	freeOver: moneySchema.allow(null),
	countries: Joi.array().items(country).min(1).max(250).unique(),
	deliveryDays,
	expressFee: moneySchema.allow(null),
	active: Joi.boolean()
};
const quoteFields = {
	methodId: uuid.required(),
	country: country.required(),
	cartTotal: moneySchema.required(),
	deliveryDate: isoDate,
	express: Joi.boolean().default(false)
};

interface Methods {
	method(id: string): Promise<ShippingMethod | null>;
	quoteOrRefuse(ctx: Ctx): Promise<ReturnType<typeof quote> & { ok: true }>;
	checkMethod(m: { price: { currency: string }; freeOver?: { currency: string } | null; expressFee?: { currency: string } | null; deliveryDays: { min: number; max: number } }): void;
	isAdmin(ctx: Ctx): boolean;
}

type This = ServiceThis<Methods>;

export default defineService<Methods>({
	name: "shipping",
	mixins: [DbMixin("shipping"), OutboxMixin()],

	actions: {
		listMethods: {
			rest: "GET /api/shipping-methods",
			params: Joi.object({ country }),
			async handler(ctx) {
				const query = this.table("methods").orderBy([{ column: "price_amount" }, { column: "name" }]);
				if (!this.isAdmin(ctx)) query.where({ active: true });
				const methods: ShippingMethod[] = (await query).map(methodView);
				return ctx.params.country ? methods.filter(m => m.countries.includes(ctx.params.country)) : methods;
			}
		},

		getMethod: {
			params: Joi.object({ id: uuid.required() }),
			async handler(ctx) {
				const m = await this.method(ctx.params.id);
				if (!m) throw notFound("Shipping method", ctx.params.id);
				return m;
			}
		},

		createMethod: {
			rest: "POST /api/admin/shipping-methods",
			params: Joi.object({
				...methodFields,
				name: methodFields.name.required(),
				carrier: methodFields.carrier.required(),
				price: methodFields.price.required(),
				countries: methodFields.countries.required(),
				deliveryDays: methodFields.deliveryDays.required()
			}),
			async handler(ctx) {
				const p = ctx.params;
				this.checkMethod(p);
				return this.idempotent(writeKey(ctx, "shipping.createMethod", ctx.meta.user?.id ?? ""), "shipping.createMethod", async trx => {
					const [row] = await this.table("methods", trx)
						.insert({
							id: randomUUID(), name: p.name, carrier: p.carrier, price_amount: p.price.amount, currency: p.price.currency,
							free_over_amount: p.freeOver?.amount ?? null, countries: JSON.stringify(p.countries), delivery_min: p.deliveryDays.min,
							delivery_max: p.deliveryDays.max, express_fee_amount: p.expressFee?.amount ?? null, active: p.active ?? true
						})
						.onConflict(this.knex.raw("(lower(name))"))
						.ignore()
						.returning("*");
					if (!row) throw conflict("NAME_TAKEN", `A shipping method named '${p.name}' exists already`, { name: p.name });
					return methodView(row);
				});
			}
		},

		updateMethod: {
			rest: "PATCH /api/admin/shipping-methods/:id",
			params: Joi.object({ id: uuid.required(), ...methodFields }).min(2).messages({ "object.min": "Nothing to change: give at least one field" }),
			async handler(ctx) {
				const { id, ...changes } = ctx.params;
				return this.transaction(async trx => {
					const row = await this.table("methods", trx).where({ id }).forUpdate().first();
					if (!row) throw notFound("Shipping method", id);
					const merged = { ...methodView(row), ...changes };
					this.checkMethod(merged);
					const update: Record<string, unknown> = { updated_at: this.knex.fn.now() };
					if (changes.name !== undefined) update.name = changes.name;
					if (changes.carrier !== undefined) update.carrier = changes.carrier;
					if (changes.price !== undefined) Object.assign(update, { price_amount: changes.price.amount, currency: changes.price.currency });
					if (changes.freeOver !== undefined) update.free_over_amount = changes.freeOver?.amount ?? null;
					if (changes.expressFee !== undefined) update.express_fee_amount = changes.expressFee?.amount ?? null;
					if (changes.countries !== undefined) update.countries = JSON.stringify(changes.countries);
					if (changes.deliveryDays !== undefined) Object.assign(update, { delivery_min: changes.deliveryDays.min, delivery_max: changes.deliveryDays.max });
					if (changes.active !== undefined) update.active = changes.active;
					if (changes.name !== undefined) {
						const taken = await this.table("methods", trx).whereRaw("lower(name) = lower(?)", [changes.name]).whereNot({ id }).first();
						if (taken) throw conflict("NAME_TAKEN", `A shipping method named '${changes.name}' exists already`, { name: changes.name });
					}
					const [after] = await this.table("methods", trx).where({ id }).update(update).returning("*");
					return methodView(after);
				});
			}
		},

		quote: {
			params: Joi.object(quoteFields),
			async handler(ctx) {
				return (await this.quoteOrRefuse(ctx)).quote;
			}
		},

		selectMethod: {
			params: Joi.object({ checkoutId: uuid.required(), methodId: uuid.required(), country, cartTotal: moneySchema }),
			async handler(ctx) {
				const { checkoutId, methodId, country, cartTotal } = ctx.params;
				const method = await this.method(methodId);
				if (!method || !method.active) throw validationError("Unknown shipping method", [{ field: "methodId", message: `No shipping method ${methodId} is offered` }]);
				let price = method.price;
				if (country || cartTotal) {
					const q = quote(method, { country: country ?? method.countries[0]!, cartTotal: cartTotal ?? { amount: 0, currency: method.price.currency } }, todayUtc());
					if (!q.ok) throw validationError(q.refusal.message, [q.refusal]);
					price = q.quote.price;
				}
				await this.transaction(trx =>
					this.record(trx, "shipping.method_selected", checkoutId, { checkoutId, methodId, methodName: method.name, carrier: method.carrier, price }, ctx)
				);
				return { checkoutId, method, price };
			}
		},

		provideAddress: {
			params: Joi.object({
				checkoutId: uuid.required(),
				address: Joi.object({
					street: Joi.string().trim().min(1).max(200).required(),
					city: Joi.string().trim().min(1).max(100).required(),
					postalCode: Joi.string().trim().min(1).max(20).required(),
					country: country.required()
				})
					.unknown(true)
					.required()
			}),
			async handler(ctx) {
				const { checkoutId, address } = ctx.params;
				const methods = (await this.table("methods").where({ active: true }).orderBy("price_amount")).map(methodView).filter((m: ShippingMethod) => m.countries.includes(address.country));
				if (methods.length === 0) throw validationError(`The shop does not deliver to ${address.country}`, [{ field: "address.country", message: `No shipping method delivers to ${address.country}` }]);
				// Street, city and postal code stay out of the event: events are kept and relayed, and an
				// address is personal data (erasable at the customer's request). The checkout holds it.
				const addressId = typeof address.addressId === "string" ? address.addressId : null;
				await this.transaction(trx => this.record(trx, "shipping.address_provided", checkoutId, { checkoutId, country: address.country, addressId }, ctx));
				return { checkoutId, country: address.country, methods };
			}
		},

		selectDeliveryDate: {
			params: Joi.object({ ...quoteFields, checkoutId: uuid.required(), deliveryDate: isoDate.required() }),
			async handler(ctx) {
				const { quote: q } = await this.quoteOrRefuse(ctx);
				const { checkoutId } = ctx.params;
				await this.transaction(trx =>
					this.record(trx, "shipping.delivery_date_selected", checkoutId, { checkoutId, methodId: q.method.id, deliveryDate: q.deliveryDate, express: q.express, expressFee: q.expressFee, price: q.price }, ctx)
				);
				return { checkoutId, ...q };
			}
		}
	},

	methods: {
		async method(this: This, id: string) {
			const row = await this.table("methods").where({ id }).first();
			return row ? methodView(row) : null;
		},

		/** The quote for the call's params, or a 422 naming the field at fault. */
		async quoteOrRefuse(this: This, ctx: Ctx) {
			const { methodId, country, cartTotal, deliveryDate, express } = ctx.params;
			const method = await this.method(methodId);
			if (!method) throw validationError("Unknown shipping method", [{ field: "methodId", message: `No shipping method ${methodId}` }]);
			const q = quote(method, { country, cartTotal, deliveryDate, express }, todayUtc());
			if (!q.ok) throw validationError(q.refusal.message, [q.refusal]);
			return q;
		},

		/** What joi cannot check field by field: a window that ends before it starts, fees in another currency. */
		checkMethod(m) {
			if (m.deliveryDays.max < m.deliveryDays.min) {
				throw validationError("deliveryDays.max must be at least deliveryDays.min", [{ field: "deliveryDays.max", message: `The window ends (${m.deliveryDays.max}) before it starts (${m.deliveryDays.min})` }]);
			}
			for (const field of ["freeOver", "expressFee"] as const) {
				const v = m[field];
				if (v && v.currency !== m.price.currency) {
					throw validationError(`${field} must be in the price's currency`, [{ field: `${field}.currency`, message: `${field} is in ${v.currency}, the price in ${m.price.currency}` }]);
				}
			}
		},

		isAdmin(ctx: Ctx) {
			return ctx.meta.user?.role === "admin";
		}
	}
});
