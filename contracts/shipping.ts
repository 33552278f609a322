/**
 * The shipping service's actions as other services call them: parameter and reply types.
 * (The joi schemas that enforce them live in the service.)
 */
import type { Money } from "./money";

export interface DeliveryDays {
	min: number;
	max: number;
}

export interface ShippingMethod {
	id: string;
	name: string;
	carrier: string;
	price: Money;
	/** The method costs nothing when the cart total is at least this. */
	freeOver: Money | null;
	/** ISO 3166-1 alpha-2 codes, upper case. */
	countries: string[];
	/** Delivery between today + min and today + max calendar days (UTC). */
	deliveryDays: DeliveryDays;
	/** Added to the price for express delivery; null when the method has no express option. */
	expressFee: Money | null;
	active: boolean;
}

/** `shipping.listMethods`: active methods, only those serving `country` when given. Admins also see inactive ones. */
export interface ListMethodsParams {
	country?: string;
}
export type ListMethodsReply = ShippingMethod[];

/** `shipping.quote`: what a method costs for this cart and when it delivers. Pure. */
export interface QuoteParams {
	methodId: string;
	country: string;
	cartTotal: Money;
	/** YYYY-MM-DD; the earliest day of the window when absent. */
	deliveryDate?: string;
	express?: boolean;
}
export interface QuoteReply {
	method: ShippingMethod;
	/** What the customer pays: the base price (0 when free) plus the express fee. */
	price: Money;
	basePrice: Money;
	expressFee: Money;
	free: boolean;
	deliveryDate: string;
	express: boolean;
	/** The window the date had to fall in. */
	window: { from: string; to: string };
}

/** `shipping.selectMethod`: the checkout records the customer's choice → `shipping.method_selected`. */
export interface SelectMethodParams {
	checkoutId: string;
	methodId: string;
	country?: string;
	cartTotal?: Money;
}
export interface SelectMethodReply {
	checkoutId: string;
	method: ShippingMethod;
	price: Money;
}

/** `shipping.provideAddress`: the checkout records the address → `shipping.address_provided`. */
export interface ProvideAddressParams {
	checkoutId: string;
	address: { street: string; city: string; postalCode: string; country: string; [field: string]: unknown };
}
export interface ProvideAddressReply {
	checkoutId: string;
	country: string;
	/** The active methods serving that country. */
	methods: ShippingMethod[];
}

/** `shipping.selectDeliveryDate`: quotes, then records → `shipping.delivery_date_selected`. */
export interface SelectDeliveryDateParams extends QuoteParams {
	checkoutId: string;
	deliveryDate: string;
}
export type SelectDeliveryDateReply = QuoteReply & { checkoutId: string };
