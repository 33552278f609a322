/**
 * The checkout session: one per cart, holding what the customer chose on the way to placing
 * the order — address, shipping method, delivery date, payment method, promo code, add-on
 * services — and the totals computed from it and the cart:
 *
 *   grandTotal = cartTotal − promotionDiscount + shippingTotal + servicesTotal
 *
 * Every change (an endpoint below, or the cart's own events) recomputes the totals from the
 * participants — `promotions.evaluate`, `shipping.quote`, `addons.price` — and writes them over
 * the version it read (optimistic lock, no remote call inside a transaction);
 * `checkout.totals_updated` is recorded only when a total changed.
 *
 * A change the customer asks for is checked strictly (a date outside the method's window is
 * a 422); a change that comes from elsewhere (the cart changed, a day went by) drops what no
 * longer fits — a delivery date gone by, an add-on no longer offered for the lines — instead.
 */
import Joi from "joi";
import { randomUUID } from "node:crypto";
import type { Trx } from "../../mixins/db.mixin";
import { conflict, isClientError, unprocessable, validationError } from "../../contracts/errors";
import type { EventEnvelope } from "../../contracts/events";
import type { Money } from "../../contracts/money";
import type { ActionDef, ChannelDef, Ctx, ServiceThis } from "../../infra/service";
import {
	AppliedPromotion,
	CheckoutLine,
	ChosenShippingMethod,
	computeTotals,
	Contact,
	emptyTotals,
	missingError,
	missingForPlace,
	PAYMENT_METHODS,
	paymentDetailsFor,
	PaymentMethod,
	PricedAddon,
	sameTotals,
	ShippingAddress,
	Totals
} from "./session";
import { buyerId } from "./place-ids";
import { uuid } from "../../contracts/ids";


/** A cart as carts shows it. */
export interface CartView {
	id: string;
	customerId: string | null;
	status: string;
	locked: boolean;
	items: Array<{ productId: string; sku: string; name: string; categoryId: string | null; quantity: number; unitPrice: Money; lineTotal: Money }>;
	total: Money;
}

/** What the customer chose. */
export interface Choices {
	address: ShippingAddress | null;
	shippingMethodId: string | null;
	deliveryDate: string | null;
	express: boolean;
	paymentMethod: PaymentMethod | null;
	promoCode: string | null;
	addonIds: string[];
}

/** A checkout session: the choices and what was computed from them. */
export interface Session extends Choices {
	id: string;
	cartId: string;
	/** The customer whose cart it is; null for a guest cart. */
	customerId: string | null;
	/** A guest's email and phone (customers are mailed at their account's address). */
	contact: Contact | null;
	version: number;
	lines: CheckoutLine[];
	/** The chosen method as quoted for this cart, with the delivery date it quoted. */
	shippingMethod: (ChosenShippingMethod & { expressFee?: Money | null; deliveryDate?: string }) | null;
	promotions: AppliedPromotion[];
	promoCodeStatus: string | null;
	addons: PricedAddon[];
	totals: Totals;
	updatedAt: string;
}

type Computed = Omit<Session, "id" | "cartId" | "customerId" | "contact" | "version" | "updatedAt">;

type Call = <T = any>(action: string, params: Record<string, unknown>) => Promise<T>;

/** Which of the customer's choices this request changes: those are checked strictly. */
type Part = "shipping";

interface RefreshOpts {
	change?: Partial<Choices>;
	strict?: Part[];
	/** Checks the computed session before it is written; throws to refuse the change. */
	accept?: (s: Computed) => void;
	/** The event that caused the refresh: handled once (inbox). */
	event?: EventEnvelope;
	cart?: CartView;
	cause?: Ctx | EventEnvelope;
}

export interface SessionMethods {
	/** The logged-in customer's cart and its checkout session (created on first use). */
	currentSession(ctx: Ctx): Promise<{ cart: CartView; session: Session }>;
	/** The same without creating anything: a refused request writes nothing. */
	peekSession(ctx: Ctx): Promise<{ cart: CartView | null; session: Session | null }>;
	loadSession(cartId: string, trx?: Trx): Promise<Session | null>;
	/** Recomputes a session's totals with `change` applied and writes it; the fresh session. */
	refreshSession(call: Call, cartId: string, opts?: RefreshOpts): Promise<Session>;
	computeSession(call: Call, base: Session, cart: CartView, strict: Part[]): Promise<Computed>;
	sessionView(s: Session): Record<string, unknown>;
	editableCart(cart: CartView): void;
	callFrom(ctx: Ctx): Call;
	onCartChanged(event: EventEnvelope): Promise<void>;
	/** Everything `place` checks before it starts a saga; answers what the order is made of. */
	readyToPlace(ctx: Ctx, paymentDetails: unknown): Promise<ReadyCheckout>;
}

/** A checkout that passed every check of `place`: the order's snapshot and how it is paid. */
export interface ReadyCheckout {
	customer: { id: string; email: string };
	cart: CartView;
	session: Session;
	paymentMethod: PaymentMethod;
	/** The method's payment details, checked (card fields, a BLIK code, PayPal's redirect addresses). */
	paymentDetails: Record<string, any>;
}

type This = ServiceThis<SessionMethods>;

const addressSchema = Joi.object({
	recipientName: Joi.string().trim().min(1).max(200).required(),
	street: Joi.string().trim().min(1).max(200).required(),
	city: Joi.string().trim().min(1).max(100).required(),
	state: Joi.string().trim().max(100).allow("", null),
	postalCode: Joi.string().trim().min(1).max(20).required(),
	country: Joi.string().trim().min(1).max(60).required()
});

export const sessionActions: Record<string, ActionDef<This>> = {
	get: {
		rest: "GET /api/checkout",
		params: Joi.object({}),
		async handler(ctx) {
			const { cart } = await this.currentSession(ctx);
			return this.sessionView(await this.refreshSession(this.callFrom(ctx), cart.id, { cart, cause: ctx }));
		}
	},

	setAddress: {
		rest: "PUT /api/checkout/address",
		params: Joi.object({ addressId: uuid, address: addressSchema }).xor("addressId", "address"),
		async handler(ctx) {
			const peeked = await this.peekSession(ctx);
			if (peeked.cart) this.editableCart(peeked.cart);
			let address: ShippingAddress;
			if (ctx.params.addressId) {
				if (!ctx.meta.user) throw validationError("A guest has no address book: send the address itself", [{ field: "addressId", message: "'addressId' needs a logged-in customer; send 'address'", type: "guest.address_book" }]);
				// From the customer's address book: someone else's answers 404.
				const a = await ctx.call<any, any>("customers.getAddress", { id: ctx.params.addressId });
				address = { addressId: a.id, recipientName: a.recipientName, street: a.street, city: a.city, state: a.state, postalCode: a.postalCode, country: a.country };
			} else {
				// Checked exactly as the address book checks it (postal code per country).
				const a = await ctx.call<any, any>("customers.validateAddress", ctx.params.address).catch(err => {
					// The fields are named as this request names them: `address.postalCode`.
					if (err?.code === 422 && Array.isArray(err.data)) err.data = err.data.map((f: any) => ({ ...f, field: `address.${f.field}` }));
					throw err;
				});
				address = { addressId: null, ...a };
			}
			// A country no method delivers to is refused before anything is written.
			const serving = await ctx.call<any[], any>("shipping.listMethods", { country: address.country });
			if (serving.length === 0) throw validationError(`The shop does not deliver to ${address.country}`, [{ field: "address.country", message: `No shipping method delivers to ${address.country}`, type: "country.not_served" }]);
			const { cart, session } = await this.currentSession(ctx);
			this.editableCart(cart);
			// shipping records the address.
			await ctx.call("shipping.provideAddress", { checkoutId: session.id, address });
			return this.sessionView(await this.refreshSession(this.callFrom(ctx), cart.id, { cart, change: { address }, cause: ctx }));
		}
	},

	/** A guest says where to send the order's mail; a logged-in customer's mail goes to the account's address. */
	setContact: {
		rest: "PUT /api/checkout/contact",
		params: Joi.object({
			email: Joi.string().trim().lowercase().email({ tlds: false }).max(254).required(),
			phone: Joi.string().trim().pattern(/^\+?[0-9 ()-]{6,20}$/).allow(null, "").messages({ "string.pattern.base": "'phone' must be a phone number" })
		}),
		async handler(ctx) {
			if (ctx.meta.user) throw validationError("Mail about your orders goes to your account's address; change it with PATCH /api/me", [{ field: "email", message: "Only a guest checkout takes a contact address", type: "customer.contact" }]);
			const peeked = await this.peekSession(ctx);
			if (peeked.cart) this.editableCart(peeked.cart);
			const { cart, session } = await this.currentSession(ctx);
			this.editableCart(cart);
			const contact: Contact = { email: ctx.params.email, phone: ctx.params.phone || null };
			await this.table("checkouts").where({ id: session.id }).update({ contact: JSON.stringify(contact), updated_at: this.knex.fn.now() });
			return this.sessionView({ ...session, contact });
		}
	},

	shippingMethods: {
		rest: "GET /api/checkout/shipping-methods",
		params: Joi.object({}),
		async handler(ctx) {
			const { session } = await this.currentSession(ctx);
			const methods = await ctx.call<any[], any>("shipping.listMethods", session.address ? { country: session.address.country } : {});
			return methods.map(m => ({ ...m, selected: m.id === session.shippingMethodId }));
		}
	},

	setShippingMethod: {
		rest: "PUT /api/checkout/shipping-method",
		params: Joi.object({ methodId: uuid.required() }),
		async handler(ctx) {
			const { cart, session } = await this.peekSession(ctx);
			if (!cart || !session?.address) throw validationError("Set the shipping address first: the methods depend on the country", [{ field: "address", message: "'address' is required", type: "any.required" }]);
			this.editableCart(cart);
			// shipping checks the method (422 when unknown or not serving the country) and records the choice.
			// Another method has other delivery days: the date is chosen again.
			await ctx.call("shipping.selectMethod", { checkoutId: session.id, methodId: ctx.params.methodId, country: session.address.country, cartTotal: cart.total });
			const change: Partial<Choices> = { shippingMethodId: ctx.params.methodId, deliveryDate: null, express: false };
			return this.sessionView(await this.refreshSession(this.callFrom(ctx), cart.id, { cart, change, strict: ["shipping"], cause: ctx }));
		}
	},

	setDeliveryDate: {
		rest: "PUT /api/checkout/delivery-date",
		params: Joi.object({ date: Joi.string().pattern(/^\d{4}-\d{2}-\d{2}$/).required().messages({ "string.pattern.base": "'date' must be a date, YYYY-MM-DD" }), express: Joi.boolean().default(false) }),
		async handler(ctx) {
			const { cart, session } = await this.peekSession(ctx);
			if (!cart || !session?.shippingMethodId) throw validationError("Choose a shipping method first", [{ field: "shippingMethod", message: "'shippingMethod' is required", type: "any.required" }]);
			this.editableCart(cart);
			// shipping checks the date against the method's window and records the choice.
			await ctx.call("shipping.selectDeliveryDate", {
				checkoutId: session.id, methodId: session.shippingMethodId, country: session.address!.country, cartTotal: cart.total, deliveryDate: ctx.params.date, express: ctx.params.express
			});
			const change = { deliveryDate: ctx.params.date, express: ctx.params.express };
			return this.sessionView(await this.refreshSession(this.callFrom(ctx), cart.id, { cart, change, strict: ["shipping"], cause: ctx }));
		}
	},

	setPaymentMethod: {
		rest: "PUT /api/checkout/payment-method",
		params: Joi.object({ method: Joi.string().valid(...PAYMENT_METHODS).required() }),
		async handler(ctx) {
			const { cart, session } = await this.currentSession(ctx);
			this.editableCart(cart);
			// payments records the choice (payment.method_selected when it changed).
			await ctx.call("payments.selectMethod", { cartId: cart.id, customerId: session.customerId, method: ctx.params.method });
			return this.sessionView(await this.refreshSession(this.callFrom(ctx), cart.id, { cart, change: { paymentMethod: ctx.params.method }, cause: ctx }));
		}
	},

	applyPromoCode: {
		rest: "POST /api/checkout/promo-code",
		params: Joi.object({ code: Joi.string().trim().min(1).max(40).required() }),
		async handler(ctx) {
			const code: string = ctx.params.code;
			const peeked = await this.peekSession(ctx);
			if (peeked.cart) this.editableCart(peeked.cart);
			if (!peeked.session) {
				// No checkout yet: the code is checked before one is made for it.
				const lines = peeked.cart ? cartLines(peeked.cart) : [];
				const ev = await ctx.call<any, any>("promotions.evaluate", { ...promotionCart(ctx.meta.user?.id ?? null, lines, peeked.cart?.total.currency ?? "PLN"), code });
				if (ev.codeStatus === "used_up") throw conflict("PROMO_CODE_USED_UP", `The code '${code}' has been used up`, { code, codeStatus: ev.codeStatus });
				if (ev.codeStatus !== "applied") throw unprocessable("PROMO_CODE_INVALID", `The code '${code}' does not apply to this cart`, { field: "code", code, codeStatus: ev.codeStatus });
			}
			const { cart, session } = await this.currentSession(ctx);
			this.editableCart(cart);
			// promotions checks the code for this cart (422 PROMO_CODE_INVALID, 409 PROMO_CODE_USED_UP) and records it.
			await ctx.call("promotions.applyCode", { checkoutId: session.id, code, ...promotionCart(session.customerId, cartLines(cart), cart.total.currency) });
			const accept = (s: Computed) => {
				if (s.promoCodeStatus !== "applied") throw conflict("PROMO_CODE_USED_UP", `The code '${code}' no longer applies`, { code, codeStatus: s.promoCodeStatus });
			};
			return this.sessionView(await this.refreshSession(this.callFrom(ctx), cart.id, { cart, change: { promoCode: code }, accept, cause: ctx }));
		}
	},

	removePromoCode: {
		rest: "DELETE /api/checkout/promo-code",
		params: Joi.object({}),
		async handler(ctx) {
			const { cart, session } = await this.currentSession(ctx);
			this.editableCart(cart);
			if (session.promoCode) await ctx.call("promotions.removeCode", { checkoutId: session.id, ...promotionCart(session.customerId, cartLines(cart), cart.total.currency) });
			return this.sessionView(await this.refreshSession(this.callFrom(ctx), cart.id, { cart, change: { promoCode: null }, cause: ctx }));
		}
	},

	addons: {
		rest: "GET /api/checkout/addons",
		params: Joi.object({}),
		async handler(ctx) {
			const { cart, session } = await this.currentSession(ctx);
			if (cart.items.length === 0) return [];
			const available = await ctx.call<any[], any>("addons.available", { lines: addonLines(cartLines(cart)), currency: cart.total.currency });
			return available.map(a => ({ ...a, selected: session.addonIds.includes(a.id) }));
		}
	},

	setAddons: {
		rest: "PUT /api/checkout/addons",
		params: Joi.object({ addonIds: Joi.array().items(uuid).unique().max(20).required() }),
		async handler(ctx) {
			const peeked = await this.peekSession(ctx);
			if (peeked.cart) this.editableCart(peeked.cart);
			// 422 naming addonIds when one is unknown or not offered for these lines — before anything is written.
			if (ctx.params.addonIds.length > 0) {
				await ctx.call("addons.price", { addonIds: ctx.params.addonIds, lines: peeked.cart ? addonLines(cartLines(peeked.cart)) : [], currency: peeked.cart?.total.currency ?? "PLN" });
			}
			const { cart } = await this.currentSession(ctx);
			this.editableCart(cart);
			return this.sessionView(await this.refreshSession(this.callFrom(ctx), cart.id, { cart, change: { addonIds: ctx.params.addonIds }, cause: ctx }));
		}
	}
};

/** The checkout follows its cart: every change of the lines recomputes the totals (once per event). */
const onCart: ChannelDef<This> = {
	group: "checkout",
	async handler(event) {
		await this.onCartChanged(event);
	}
};

export const sessionChannels: Record<string, ChannelDef<This>> = {
	"cart.item_added": onCart,
	"cart.item_quantity_changed": onCart,
	"cart.item_removed": onCart,
	"cart.cleared": onCart,

	/** The place-order saga created the order of a checkout: `checkout.order_created`, once. */
	"order.placed": {
		group: "checkout",
		async handler(event) {
			const p = event.payload as any;
			if (typeof p?.cartId !== "string") return;
			const session = await this.loadSession(p.cartId);
			if (!session) return; // an order placed without a checkout session
			await this.handleOnce(event, "checkout.onOrderPlaced", trx =>
				this.record(trx, "checkout.order_created", session.id, {
					checkoutId: session.id, cartId: p.cartId, orderId: p.orderId, orderNumber: p.orderNumber, customerId: p.customerId,
					grandTotal: p.totals?.grandTotal ?? p.total?.amount, currency: p.totals?.currency ?? p.total?.currency
				}, event).then(() => undefined)
			);
		}
	}
};

class VersionMoved extends Error {}

function cartLines(cart: CartView): CheckoutLine[] {
	return cart.items.map(l => ({ productId: l.productId, sku: l.sku, name: l.name, categoryId: l.categoryId ?? null, quantity: l.quantity, unitPrice: l.unitPrice, lineTotal: l.lineTotal }));
}

/** The cart as promotions reads it. */
function promotionCart(customerId: string | null, lines: CheckoutLine[], currency: string) {
	return {
		...(customerId ? { customerId } : {}),
		lines: lines.map(l => ({ productId: l.productId, categoryId: l.categoryId, quantity: l.quantity, unitPrice: l.unitPrice })),
		currency
	};
}

/** The cart as addons reads it. */
function addonLines(lines: CheckoutLine[]) {
	return lines.map(l => ({ productId: l.productId, categoryId: l.categoryId }));
}

export const sessionMethods: SessionMethods & ThisType<This> = {
	callFrom(ctx: Ctx): Call {
		return (action, params) => ctx.call(action, params);
	},

	editableCart(cart: CartView) {
		if (cart.locked) throw conflict("CART_LOCKED", "The order of this cart is being placed; its checkout cannot change now");
	},

	async currentSession(this: This, ctx: Ctx) {
		const cart = await ctx.call<CartView, any>("carts.get", {});
		let session = await this.loadSession(cart.id);
		if (!session) {
			await this.table("checkouts")
				.insert({ id: randomUUID(), cart_id: cart.id, customer_id: cart.customerId, totals: JSON.stringify(emptyTotals(cart.total.currency)) })
				.onConflict("cart_id")
				.ignore();
			session = (await this.loadSession(cart.id))!;
		}
		return { cart, session };
	},

	async peekSession(this: This, ctx: Ctx) {
		const cart = await ctx.call<CartView | null, any>("carts.peek", {});
		return { cart, session: cart ? await this.loadSession(cart.id) : null };
	},

	async loadSession(this: This, cartId: string, trx?: Trx) {
		const r = await this.table("checkouts", trx).where({ cart_id: cartId }).first();
		if (!r) return null;
		return {
			id: r.id,
			cartId: r.cart_id,
			customerId: r.customer_id,
			contact: r.contact ?? null,
			version: r.version,
			address: r.address,
			shippingMethodId: r.shipping_method_id,
			shippingMethod: r.shipping_method,
			deliveryDate: r.delivery_date,
			express: r.express,
			paymentMethod: r.payment_method,
			promoCode: r.promo_code,
			promoCodeStatus: r.promo_code_status,
			addonIds: r.addon_ids ?? [],
			addons: r.addons ?? [],
			promotions: r.promotions ?? [],
			lines: r.lines ?? [],
			totals: r.totals,
			updatedAt: new Date(r.updated_at).toISOString()
		};
	},

	async refreshSession(this: This, call: Call, cartId: string, opts: RefreshOpts = {}) {
		for (let attempt = 1; ; attempt++) {
			const base = await this.loadSession(cartId);
			if (!base) throw new Error(`No checkout for cart ${cartId}`);
			const cart = attempt === 1 && opts.cart ? opts.cart : await call<CartView>("carts.getById", { cartId });
			const computed = await this.computeSession(call, { ...base, ...opts.change }, cart, opts.strict ?? []);
			opts.accept?.(computed);
			// Nothing to write (the usual case at place, where the session was refreshed at every
			// choice): no transaction, no version bump. A cart event is still recorded in the inbox below.
			if (!opts.event && sameSession(base, computed)) return base;
			const write = async (trx: Trx) => {
				const n = await this.table("checkouts", trx)
					.where({ id: base.id, version: base.version })
					.update({
						address: computed.address ? JSON.stringify(computed.address) : null,
						address_id: computed.address?.addressId ?? null,
						shipping_method_id: computed.shippingMethodId,
						shipping_method: computed.shippingMethod ? JSON.stringify(computed.shippingMethod) : null,
						delivery_date: computed.deliveryDate,
						express: computed.express,
						payment_method: computed.paymentMethod,
						promo_code: computed.promoCode,
						promo_code_status: computed.promoCodeStatus,
						addon_ids: JSON.stringify(computed.addonIds),
						addons: JSON.stringify(computed.addons),
						promotions: JSON.stringify(computed.promotions),
						lines: JSON.stringify(computed.lines),
						totals: JSON.stringify(computed.totals),
						version: base.version + 1,
						updated_at: this.knex.fn.now()
					});
				if (n === 0) throw new VersionMoved();
				if (!sameTotals(base.totals, computed.totals)) {
					await this.record(trx, "checkout.totals_updated", base.id, { checkoutId: base.id, cartId, customerId: base.customerId, ...computed.totals }, opts.cause ?? null);
				}
			};
			try {
				if (opts.event) await this.handleOnce(opts.event, "checkout.onCartChanged", write);
				else await this.transaction(write);
				return (await this.loadSession(cartId))!;
			} catch (err) {
				// Another change was written meanwhile: compute again from it.
				if (!(err instanceof VersionMoved) || attempt >= 10) throw err;
			}
		}
	},

	async computeSession(this: This, call: Call, base: Session, cart: CartView, strict: Part[]): Promise<Computed> {
		const c: Choices = { address: base.address, shippingMethodId: base.shippingMethodId, deliveryDate: base.deliveryDate, express: base.express, paymentMethod: base.paymentMethod, promoCode: base.promoCode, addonIds: [...base.addonIds] };
		const currency = cart.total.currency;
		const lines = cartLines(cart);
		const scope = addonLines(lines);

		// The three participants are asked at once: none of their answers depends on another's.
		// Promotions: automatic ones and the code, if any (promotions records what changed for this checkout).
		const promoting = call<any>("promotions.recalculate", { checkoutId: base.id, ...promotionCart(base.customerId, lines, currency), ...(c.promoCode ? { code: c.promoCode } : {}) });
		// Add-on services: those chosen that the lines still qualify for (addons records a changed offer).
		const offering = call<any>("addons.calculateAvailability", { checkoutId: base.id, lines: scope, selectedAddonIds: c.addonIds, currency });
		// Shipping: the method's price for this country and cart (free over…, express fee).
		const quoting = (async () => {
			while (c.shippingMethodId && c.address) {
				try {
					const q = await call<any>("shipping.quote", {
						methodId: c.shippingMethodId,
						country: c.address.country,
						cartTotal: cart.total,
						...(c.deliveryDate ? { deliveryDate: c.deliveryDate, express: c.express } : {})
					});
					const method: Session["shippingMethod"] = { id: q.method.id, name: q.method.name, carrier: q.method.carrier, price: q.price, expressFee: q.method.expressFee ?? null, deliveryDate: q.deliveryDate };
					return { shipping: q.price.amount as number, shippingMethod: method };
				} catch (err) {
					if (strict.includes("shipping") || !isClientError(err)) throw err;
					// No longer fits (a date gone by, a country the method does not serve): drop it.
					this.logger.info(`Checkout ${base.id}: dropped ${c.deliveryDate ? "the delivery date" : "the shipping method"}: ${(err as Error).message}`);
					if (c.deliveryDate) {
						c.deliveryDate = null;
						c.express = false;
					} else {
						c.shippingMethodId = null;
					}
				}
			}
			return { shipping: 0, shippingMethod: null as Session["shippingMethod"] };
		})();
		// Every call ends before a refusal is passed on, the first in the order the totals are built.
		for (const r of await Promise.allSettled([promoting, quoting, offering])) if (r.status === "rejected") throw r.reason;
		const [ev, { shipping, shippingMethod }, offer] = await Promise.all([promoting, quoting, offering]);
		const discount: number = ev.discount?.amount ?? 0;
		const promotions: AppliedPromotion[] = ev.promotions ?? [];
		const promoCodeStatus: string | null = c.promoCode ? (ev.codeStatus ?? null) : null;
		if (!c.shippingMethodId) {
			c.deliveryDate = null;
			c.express = false;
		}
		const addons: PricedAddon[] = offer.selected;
		const services: number = offer.total.amount;
		c.addonIds = addons.map(a => a.id);

		const totals = computeTotals({ cartTotal: cart.total.amount, discount, shipping, services, currency });
		return { ...c, lines, shippingMethod, promotions, promoCodeStatus, addons, totals };
	},

	sessionView(s: Session) {
		return {
			id: s.id,
			cartId: s.cartId,
			customerId: s.customerId,
			guest: s.customerId === null,
			contact: s.contact,
			items: s.lines,
			address: s.address,
			shippingMethod: s.shippingMethod,
			deliveryDate: s.deliveryDate,
			express: s.express,
			paymentMethod: s.paymentMethod,
			promoCode: s.promoCode,
			promoCodeStatus: s.promoCodeStatus,
			promotions: s.promotions,
			addons: s.addons,
			totals: s.totals,
			missing: missingForPlace(s),
			updatedAt: s.updatedAt
		};
	},

	async readyToPlace(this: This, ctx: Ctx, paymentDetails: unknown): Promise<ReadyCheckout> {
		const user = ctx.meta.user;
		let customer: { id: string; email: string } | null = null;
		// The customer and the cart are asked at once; the customer's refusal still comes first.
		const [asked, peek] = await Promise.allSettled([user ? ctx.call<any, any>("customers.get", { id: user.id }) : Promise.resolve(null), this.peekSession(ctx)]);
		if (asked.status === "rejected") throw asked.reason;
		if (user) {
			const c = asked.value;
			if (!c.emailVerified) throw conflict("EMAIL_NOT_VERIFIED", "Verify your email address before placing an order");
			customer = { id: c.id, email: c.email };
		}
		if (peek.status === "rejected") throw peek.reason;
		// Everything is checked on what the customer chose before anything is written.
		const peeked = peek.value;
		const cart = peeked.cart;
		if (!cart || cart.items.length === 0) throw conflict("CART_EMPTY", "The cart is empty");
		if (cart.locked) throw conflict("CART_LOCKED", "A checkout of this cart is already running");
		const chosen = peeked.session;
		// A shop with exactly one method for the country chooses it itself.
		let methodId = chosen?.shippingMethodId ?? null;
		if (!methodId && chosen?.address) {
			const methods = await ctx.call<any[], any>("shipping.listMethods", { country: chosen.address.country });
			if (methods.length === 1) methodId = methods[0].id;
		}
		const missing = missingForPlace({ address: chosen?.address ?? null, shippingMethodId: methodId, paymentMethod: chosen?.paymentMethod ?? null, customerId: user ? user.id : null, contact: chosen?.contact ?? null });
		if (missing.length > 0) throw missingError(missing);
		const method = chosen!.paymentMethod!;
		const details = paymentDetailsFor(method, paymentDetails);

		// The stock is checked while the totals are computed afresh (with the method the shop chose
		// if it did); a shortage is the refusal passed on first.
		const change = methodId !== chosen!.shippingMethodId ? { shippingMethodId: methodId } : undefined;
		const [stocked, refreshed] = await Promise.allSettled([
			ctx.call<any[], any>("inventory.getMany", { skus: cart.items.map(l => l.sku) }),
			this.refreshSession(this.callFrom(ctx), cart.id, { cart, change, cause: ctx })
		]);
		if (stocked.status === "rejected") throw stocked.reason;
		const available = new Map(stocked.value.map(s => [s.sku, s.available as number]));
		const short = cart.items.filter(l => (available.get(l.sku) ?? 0) < l.quantity);
		if (short.length > 0) {
			throw conflict("OUT_OF_STOCK", `Not enough stock for ${short.map(l => `'${l.name}'`).join(", ")}`, { lines: short.map(l => ({ productId: l.productId, sku: l.sku, requested: l.quantity, available: available.get(l.sku) ?? 0 })) });
		}
		if (refreshed.status === "rejected") throw refreshed.reason;
		const session = refreshed.value;
		const gone = missingForPlace(session);
		if (gone.length > 0) throw missingError(gone); // a choice that no longer fits was dropped
		// A guest's order carries an id derived from the cart's token and the email the guest gave.
		customer ??= { id: buyerId(ctx.meta)!, email: chosen!.contact!.email };
		return { customer, cart, session, paymentMethod: method, paymentDetails: details };
	},

	async onCartChanged(this: This, event: EventEnvelope) {
		const cartId = (event.payload as any)?.cartId;
		if (typeof cartId !== "string") return;
		if (!(await this.loadSession(cartId))) return; // no checkout started for this cart yet: nothing to follow
		const call: Call = (action, params) => this.broker.call(action, params, { meta: { correlationId: event.correlation_id ?? undefined } });
		await this.refreshSession(call, cartId, { event, cause: event });
	}
};

/**
 * Whether a computed session writes exactly what the stored one holds (compared as the columns are
 * written). Postgres hands jsonb back with its keys in an order of its own, so objects are
 * compared with sorted keys: compared as they came, every place rewrote an unchanged session.
 */
function sameSession(base: Session, computed: Computed): boolean {
	const columns = (x: any) =>
		canonicalJson([
			x.address ?? null, x.shippingMethodId ?? null, x.shippingMethod ?? null, x.deliveryDate ?? null, x.express ?? null, x.paymentMethod ?? null,
			x.promoCode ?? null, x.promoCodeStatus ?? null, x.addonIds ?? [], x.addons ?? [], x.promotions ?? [], x.lines ?? [], x.totals ?? null
		]);
	return columns(base) === columns(computed);
}

/** JSON with every object's keys in sorted order. */
function canonicalJson(value: unknown): string {
	return JSON.stringify(value, (_key, v) =>
		v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v
	);
}

/** What the order is made of, as the checkout showed it when the customer placed it. */
export function orderSnapshot(r: ReadyCheckout) {
	const s = r.session;
	const { addressId: _addressId, ...shippingAddress } = s.address!;
	const { expressFee: _fee, deliveryDate: quotedDate, ...shippingMethod } = s.shippingMethod!;
	return {
		cartId: r.cart.id,
		checkoutId: s.id,
		customerId: r.customer.id,
		customerEmail: r.customer.email,
		lines: s.lines.map(l => ({ productId: l.productId, sku: l.sku, name: l.name, categoryId: l.categoryId, quantity: l.quantity, unitPrice: l.unitPrice })),
		shippingAddress: { ...shippingAddress, addressId: _addressId },
		shippingMethod,
		deliveryDate: s.deliveryDate ?? quotedDate ?? null,
		express: s.express,
		addons: s.addons,
		promotions: s.promotions,
		promoCode: s.promoCode,
		totals: s.totals,
		total: { amount: s.totals.grandTotal, currency: s.totals.currency }
	};
}

/** How the saga pays: a card is tokenized now (its number never enters the saga), BLIK and PayPal carry their details. */
export async function paymentOf(ctx: Ctx, r: ReadyCheckout) {
	const d = r.paymentDetails;
	switch (r.paymentMethod) {
		case "card": {
			const { paymentToken, last4 } = await ctx.call<any, any>("payments.tokenize", { ...d, cardNumber: String(d.cardNumber).replace(/ /g, "") });
			return { paymentMethod: "card" as const, paymentToken, last4 };
		}
		case "blik":
			return { paymentMethod: "blik" as const, blikCode: d.blikCode as string };
		case "paypal":
			return { paymentMethod: "paypal" as const, returnUrl: d.returnUrl as string, cancelUrl: d.cancelUrl as string };
	}
}
