/**
 * Typed references to the actions sagas call, and to the events they wait for. A saga step
 * says `invoke: Inventory.reserve` instead of the bare string "inventory.reserve": the params it
 * builds are checked against `ReserveParams`, and its reply arrives typed as `ReserveReply`.
 *
 * Each participant keeps its joi schema in its own service file; this file holds only the
 * TypeScript shapes and the names, so a saga never imports a service's code. Every
 * saga-called action also takes an `idempotencyKey`, which the engine adds
 * (`<sagaId>:<step>`, compensations `<sagaId>:<step>:compensate`): params here leave it out.
 */
import type { Money } from "./money";
import type * as A from "./addons";
import type * as P from "./promotions";
import type * as S from "./shipping";

/** A participant action: its name, and (only for the compiler) the shapes of its params and reply. */
export interface ActionRef<P, R> {
	readonly kind: "action";
	readonly name: string;
	/** Never set: carries the types. */
	readonly __types?: { params: P; reply: R };
}

export function action<P, R = unknown>(name: string): ActionRef<P, R> {
	if (!/^[a-z][A-Za-z0-9]*\.[a-z][A-Za-z0-9]*$/.test(name)) throw new Error(`An action is '<service>.<action>', got '${name}'`);
	return { kind: "action", name };
}

/** An event a saga can wait for, with the shape of its payload. */
export interface EventRef<P> {
	readonly kind: "event";
	readonly name: string;
	readonly __payload?: P;
}

export function event<P>(name: string): EventRef<P> {
	return { kind: "event", name };
}

export type ParamsOf<A> = A extends ActionRef<infer P, any> ? P : never;
export type ReplyOf<A> = A extends ActionRef<any, infer R> ? R : never;
export type PayloadOf<E> = E extends EventRef<infer P> ? P : never;

// --- carts -----------------------------------------------------------------------------------

export interface CartLine {
	productId: string;
	sku: string;
	name: string;
	quantity: number;
	unitPrice: Money;
	categoryId?: string;
}

export const Carts = {
	/** Locks the cart for one saga and answers its lines at current prices. */
	/** A cart whose total is no longer `expectedTotal` (what the checkout showed) is refused: 409 CART_CHANGED. */
	lock: action<{ cartId: string; sagaId: string; expectedTotal?: Money }, { cartId: string; customerId: string; lines: CartLine[]; total: Money }>("carts.lock"),
	unlock: action<{ cartId: string; sagaId: string }, { cartId: string; unlocked: boolean }>("carts.unlock"),
	/** Empties the cart into the order. */
	checkout: action<{ cartId: string; sagaId: string; orderId: string }, { cartId: string; orderId: string }>("carts.checkout")
};

// --- orders ----------------------------------------------------------------------------------

export interface OrderLineInput {
	productId: string;
	sku: string;
	name: string;
	quantity: number;
	unitPrice: Money;
}

/** What checkout snapshots into the order besides its lines (all optional: the card-only path has none). */
export interface OrderSnapshot {
	shippingAddress?: { recipientName: string; street: string; city: string; state: string | null; postalCode: string; country: string; addressId?: string | null } | null;
	shippingMethod?: { id: string; name: string; carrier: string; price: Money } | null;
	deliveryDate?: string | null;
	express?: boolean;
	addons?: Array<{ id: string; name: string; price: Money }>;
	promotions?: Array<{ promotionId: string; code?: string | null; name: string; discount: Money }>;
	/** Amounts in minor units of `currency`, as the checkout showed them. */
	totals?: { cartTotal: number; promotionDiscount: number; shippingTotal: number; servicesTotal: number; grandTotal: number; currency: string } | null;
	paymentMethod?: PaymentMethod | null;
}

export interface OrderView {
	id: string;
	orderNumber: string;
	status: string;
	customerId: string;
	total: Money;
	[more: string]: unknown;
}

export const Orders = {
	create: action<{ orderId: string; customerId: string; customerEmail?: string | null; cartId?: string | null; sagaId?: string | null; lines: OrderLineInput[] } & OrderSnapshot, OrderView>("orders.create"),
	/** pending → awaiting_payment (BLIK / PayPal while the payment waits). */
	markAwaitingPayment: action<{ orderId: string }, OrderView>("orders.markAwaitingPayment"),
	confirm: action<{ orderId: string; paymentId?: string | null }, OrderView>("orders.confirm"),
	/** payment_failed for a payment refusal, else cancelled. */
	fail: action<{ orderId: string; reason: string; code?: string | null }, OrderView | null>("orders.fail"),
	/** The cancel-order saga's last step; emits order.cancelled. */
	markCancelled: action<{ orderId: string; reason: string; refundAmount?: Money }, OrderView>("orders.markCancelled")
};

// --- inventory -------------------------------------------------------------------------------

export interface StockLine {
	sku: string;
	quantity: number;
}

export const Inventory = {
	/** All lines or none. */
	reserve: action<{ orderId: string; lines: StockLine[]; cartId?: string }, { orderId: string; lines: StockLine[] }>("inventory.reserve"),
	release: action<{ orderId: string; reason?: string | null }, { orderId: string; lines: StockLine[] }>("inventory.release"),
	deduct: action<{ orderId: string }, { orderId: string; lines: StockLine[] }>("inventory.deduct")
};

// --- payments --------------------------------------------------------------------------------

export type PaymentMethod = "card" | "blik" | "paypal";

export interface AuthorizeParams {
	orderId: string;
	amount: Money;
	/** Absent means card (the card-only path before BLIK and PayPal). */
	method?: PaymentMethod;
	/** Card: the token from payments.tokenize; the card number never enters a saga. */
	paymentToken?: string;
	blikCode?: string;
	returnUrl?: string;
	cancelUrl?: string;
	customerId?: string;
}

/** Card: authorized at once. BLIK / PayPal: pending; the outcome comes later as payment.authorized / payment.failed. */
export interface AuthorizeReply {
	paymentId: string;
	status: "authorized" | "pending";
	transactionId?: string | null;
	redirectUrl?: string | null;
	[more: string]: unknown;
}

export interface PaymentView {
	paymentId: string;
	orderId: string;
	method: PaymentMethod;
	status: string;
	transactionId?: string | null;
	amount: Money;
	captured?: Money;
	refunded?: Money;
}

export const Payments = {
	authorize: action<AuthorizeParams, AuthorizeReply>("payments.authorize"),
	/** Voids an authorization, or cancels a pending BLIK / PayPal payment so that a late approval is voided. */
	void: action<{ orderId: string; reason?: string | null }, PaymentView | null>("payments.void"),
	capture: action<{ orderId: string }, PaymentView>("payments.capture"),
	/** Never more than captured. */
	refund: action<{ orderId: string; amount?: Money; reason: string }, PaymentView & { refundId?: string }>("payments.refund"),
	/** The checkout's chosen method for a cart; payment.method_selected when it changes. */
	selectMethod: action<{ cartId: string; customerId?: string | null; method: PaymentMethod }, { cartId: string; method: PaymentMethod; changed: boolean }>("payments.selectMethod"),
	/** The order's payment (the active one, else the latest attempt); 404 when it never paid. */
	get: action<{ orderId: string }, PaymentView>("payments.get")
};

export interface PaymentAuthorized {
	paymentId: string;
	orderId: string;
	method: PaymentMethod;
	amount: Money;
	transactionId: string;
}

export interface PaymentFailed {
	paymentId: string;
	orderId: string;
	method: PaymentMethod;
	amount: Money;
	reason: string;
	type: string;
}

export const PaymentEvents = {
	authorized: event<PaymentAuthorized>("payment.authorized"),
	failed: event<PaymentFailed>("payment.failed")
};

// --- promotions, shipping, add-ons (shapes in contracts/promotions.ts, shipping.ts, addons.ts) ---

export const Promotions = {
	/** What the cart's promotions take off; changes nothing. */
	evaluate: action<P.EvaluateParams, P.EvaluateReply>("promotions.evaluate"),
	/** The checkout's cart changed: promotion.applied / promotion.removed for what differs. */
	recalculate: action<P.RecalculateParams, P.CheckoutPromotionsReply>("promotions.recalculate"),
	/** The customer enters a code: 422 PROMO_CODE_INVALID or 409 PROMO_CODE_USED_UP, else promotion.code_applied. */
	applyCode: action<P.ApplyCodeParams, P.CheckoutPromotionsReply>("promotions.applyCode"),
	removeCode: action<P.RemoveCodeParams, P.CheckoutPromotionsReply>("promotions.removeCode"),
	/** One use of a code for this order; 409 PROMO_CODE_USED_UP when its limits are reached, PROMO_CODE_INVALID when unknown or expired. */
	redeem: action<Omit<P.RedeemParams, "idempotencyKey">, P.RedeemReply>("promotions.redeem"),
	/** Gives the use back (compensation / cancel); a no-op (released: false) for an order that never redeemed. */
	release: action<Omit<P.ReleaseParams, "idempotencyKey">, P.ReleaseReply>("promotions.release")
};

export const Shipping = {
	listMethods: action<S.ListMethodsParams, S.ListMethodsReply>("shipping.listMethods"),
	/** Price and delivery date for a cart; 422 naming the field for an unknown method, a country not served, a date outside the window. */
	quote: action<S.QuoteParams, S.QuoteReply>("shipping.quote"),
	selectMethod: action<S.SelectMethodParams, S.SelectMethodReply>("shipping.selectMethod"),
	provideAddress: action<S.ProvideAddressParams, S.ProvideAddressReply>("shipping.provideAddress"),
	selectDeliveryDate: action<S.SelectDeliveryDateParams, S.SelectDeliveryDateReply>("shipping.selectDeliveryDate")
};

export const Addons = {
	available: action<A.AvailableParams, A.AvailableReply>("addons.available"),
	/** 422 naming addonIds when one is unknown or not offered for these lines. */
	price: action<A.PriceParams, A.PriceReply>("addons.price"),
	/** The checkout's cart changed: addons.availability_calculated when the answer differs. */
	calculateAvailability: action<A.CalculateAvailabilityParams, A.CalculateAvailabilityReply>("addons.calculateAvailability")
};

// --- checkout --------------------------------------------------------------------------------

export const Checkout = {
	/** Runs the cancel-order saga (asked by orders.cancel). */
	cancelOrder: action<{ orderId: string; reason: string; requestedBy: string }, { sagaId: string; [more: string]: unknown }>("checkout.cancelOrder")
};
