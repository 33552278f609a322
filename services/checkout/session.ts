/**
 * The checkout session's rules that need no broker: how the totals add up, what `place`
 * still misses, and what payment details each payment method takes.
 */
import Joi from "joi";
import { validationError } from "../../contracts/errors";
import type { Money } from "../../contracts/money";

export const PAYMENT_METHODS = ["card", "blik", "paypal"] as const;
export type PaymentMethod = (typeof PAYMENT_METHODS)[number];

/** Every amount in minor units of `currency`. */
export interface Totals {
	cartTotal: number;
	promotionDiscount: number;
	shippingTotal: number;
	servicesTotal: number;
	grandTotal: number;
	currency: string;
}

export interface CheckoutLine {
	productId: string;
	sku: string;
	name: string;
	categoryId: string | null;
	quantity: number;
	unitPrice: Money;
	lineTotal: Money;
}

export interface ShippingAddress {
	addressId: string | null;
	recipientName: string;
	street: string;
	city: string;
	state: string | null;
	postalCode: string;
	country: string;
}

export interface ChosenShippingMethod {
	id: string;
	name: string;
	carrier: string;
	price: Money;
}

export interface PricedAddon {
	id: string;
	name: string;
	price: Money;
}

export interface AppliedPromotion {
	promotionId: string;
	name: string;
	code?: string | null;
	kind?: string;
	value?: number;
	discount: Money;
}

/**
 * grandTotal = cartTotal − promotionDiscount + shippingTotal + servicesTotal. A discount
 * never exceeds the goods it is on (shipping and services are not discounted).
 */
export function computeTotals(parts: { cartTotal: number; discount: number; shipping: number; services: number; currency: string }): Totals {
	const promotionDiscount = Math.min(Math.max(0, parts.discount), parts.cartTotal);
	return {
		cartTotal: parts.cartTotal,
		promotionDiscount,
		shippingTotal: parts.shipping,
		servicesTotal: parts.services,
		grandTotal: parts.cartTotal - promotionDiscount + parts.shipping + parts.services,
		currency: parts.currency
	};
}

export function sameTotals(a: Totals | null | undefined, b: Totals): boolean {
	return !!a && a.cartTotal === b.cartTotal && a.promotionDiscount === b.promotionDiscount && a.shippingTotal === b.shippingTotal && a.servicesTotal === b.servicesTotal && a.grandTotal === b.grandTotal && a.currency === b.currency;
}

export function emptyTotals(currency = "PLN"): Totals {
	return computeTotals({ cartTotal: 0, discount: 0, shipping: 0, services: 0, currency });
}

/** How a guest can be reached about the order (a customer is mailed at the account's address). */
export interface Contact {
	email: string;
	phone: string | null;
}

/**
 * What a checkout still lacks before it can be placed, as the fields a storefront sets. A guest
 * checkout (no customer behind the cart) also needs the guest's `contact`.
 */
export function missingForPlace(s: { address: unknown; shippingMethodId: string | null; paymentMethod: string | null; customerId?: string | null; contact?: Contact | null }): string[] {
	const missing: string[] = [];
	if (s.customerId === null && !s.contact) missing.push("contact");
	if (!s.address) missing.push("address");
	if (!s.shippingMethodId) missing.push("shippingMethod");
	if (!s.paymentMethod) missing.push("paymentMethod");
	return missing;
}

const MISSING_WORDS: Record<string, string> = { contact: "an email address", address: "an address", shippingMethod: "a shipping method", paymentMethod: "a payment method" };

export function missingError(missing: string[]) {
	const message = `Choose ${missing.map(m => MISSING_WORDS[m] ?? m).join(", ")} before placing the order`;
	return validationError(message, missing.map(field => ({ field, message: `'${field}' is required`, type: "any.required" })));
}

const card = Joi.object({
	// The message must not echo the number back (it would land in logs).
	cardNumber: Joi.string().trim().pattern(/^[0-9 ]{12,23}$/).required().messages({ "string.pattern.base": "'cardNumber' must be 12 to 19 digits" }),
	expMonth: Joi.number().integer().min(1).max(12).required(),
	expYear: Joi.number().integer().min(2000).max(2100).required(),
	cvc: Joi.string().pattern(/^[0-9]{3,4}$/).required()
});
const blik = Joi.object({ blikCode: Joi.string().pattern(/^[0-9]{6}$/).required().messages({ "string.pattern.base": "'blikCode' must be 6 digits" }) });
const redirect = Joi.string().uri({ scheme: ["http", "https"] }).max(2000);
const paypal = Joi.object({ returnUrl: redirect.required(), cancelUrl: redirect.required() });

export const PAYMENT_DETAILS: Record<PaymentMethod, Joi.ObjectSchema> = { card, blik, paypal };

/** The payment details of the chosen method, or a 422 naming each bad field (`paymentDetails.blikCode`). */
export function paymentDetailsFor(method: PaymentMethod, details: unknown): Record<string, any> {
	const { error, value } = PAYMENT_DETAILS[method].validate(details ?? {}, { abortEarly: false, convert: true });
	if (error) {
		throw validationError(
			`Payment details do not fit the payment method '${method}'`,
			error.details.map(d => ({ field: ["paymentDetails", ...d.path].join("."), message: d.message.replace(/"/g, "'"), type: d.type }))
		);
	}
	return value;
}
