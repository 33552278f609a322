/**
 * place-order: a customer's checkout becomes a confirmed, paid-for order — or nothing at all.
 *
 *   lock the cart → create the order (pending, with the checkout's snapshot)
 *   → redeem the promo code (when one is on) → reserve the stock
 *   → BLIK / PayPal: the order awaits payment
 *   → authorize the payment (card: at once; BLIK / PayPal: wait for the bank's answer,
 *     at most PAYMENT_DEADLINE_MS)
 *   → [point of no return] → confirm the order → check the cart out
 *
 * A failure up to the payment undoes, in reverse, what was done: void the payment, release
 * the stock, give the code's use back, fail the order (payment_failed / cancelled), unlock the
 * cart. After the pivot nothing is undone: confirming and checking out retry until they succeed.
 */
import { Carts, Inventory, Orders, PaymentEvents, Payments, Promotions } from "../contracts/actions";
import type { Money } from "../contracts/money";
import { settings } from "../infra/settings";
import type { AppliedPromotion, ChosenShippingMethod, PaymentMethod, PricedAddon, ShippingAddress, Totals } from "../services/checkout/session";
import { saga } from "./definition";

export interface OrderLine {
	productId: string;
	sku: string;
	name: string;
	categoryId?: string | null;
	quantity: number;
	unitPrice: Money;
}

export interface PlaceOrderData {
	sagaId: string;
	orderId: string;
	cartId: string;
	checkoutId: string;
	customerId: string;
	customerEmail: string;
	// What the customer chose at checkout: the order keeps it as it was.
	lines: OrderLine[];
	shippingAddress: ShippingAddress;
	shippingMethod: ChosenShippingMethod;
	deliveryDate: string | null;
	express: boolean;
	addons: PricedAddon[];
	promotions: AppliedPromotion[];
	promoCode: string | null;
	totals: Totals;
	/** What the customer pays: totals.grandTotal. */
	total: Money;
	// How it is paid.
	paymentMethod: PaymentMethod;
	paymentToken?: string;
	last4?: string;
	blikCode?: string;
	returnUrl?: string;
	cancelUrl?: string;
	// Learnt on the way.
	orderNumber?: string;
	paymentId?: string;
	transactionId?: string | null;
	redirectUrl?: string | null;
}

const paidLater = (d: PlaceOrderData) => d.paymentMethod !== "card";

export const placeOrder = saga<PlaceOrderData>("place-order")
	.step("lockCart", {
		invoke: Carts.lock,
		// A cart changed since the checkout showed its totals is refused, not ordered at other prices.
		params: d => ({ cartId: d.cartId, sagaId: d.sagaId, expectedTotal: { amount: d.totals.cartTotal, currency: d.totals.currency } }),
		onReply: (d, r) => ({ ...d, lines: r.lines }),
		compensate: Carts.unlock,
		compensateParams: d => ({ cartId: d.cartId, sagaId: d.sagaId })
	})
	.step("createOrder", {
		invoke: Orders.create,
		params: d => ({
			orderId: d.orderId, customerId: d.customerId, customerEmail: d.customerEmail, cartId: d.cartId, sagaId: d.sagaId,
			lines: d.lines.map(l => ({ productId: l.productId, sku: l.sku, name: l.name, quantity: l.quantity, unitPrice: l.unitPrice })),
			shippingAddress: d.shippingAddress, shippingMethod: d.shippingMethod, deliveryDate: d.deliveryDate, express: d.express,
			addons: d.addons, promotions: d.promotions, totals: d.totals, paymentMethod: d.paymentMethod
		}),
		onReply: (d, r) => ({ ...d, orderNumber: r.orderNumber }),
		compensate: Orders.fail,
		compensateParams: (d, failure) => ({ orderId: d.orderId, reason: failure.message, code: failure.type })
	})
	.step("redeemPromotion", {
		when: d => !!d.promoCode,
		invoke: Promotions.redeem,
		params: d => ({ orderId: d.orderId, customerId: d.customerId, code: d.promoCode! }),
		compensate: Promotions.release,
		compensateParams: (d, failure) => ({ orderId: d.orderId, reason: failure.message })
	})
	.step("reserveStock", {
		invoke: Inventory.reserve,
		// The cart's soft hold, if any, becomes this reservation in one transaction.
		params: d => ({ orderId: d.orderId, cartId: d.cartId, lines: d.lines.map(l => ({ sku: l.sku, quantity: l.quantity })) }),
		compensate: Inventory.release,
		compensateParams: (d, failure) => ({ orderId: d.orderId, reason: failure.message })
	})
	.step("markAwaitingPayment", {
		when: paidLater,
		invoke: Orders.markAwaitingPayment,
		params: d => ({ orderId: d.orderId })
	})
	.step("authorizePayment", {
		invoke: Payments.authorize,
		params: d => ({
			orderId: d.orderId, amount: d.total, method: d.paymentMethod, customerId: d.customerId,
			...(d.paymentMethod === "card" ? { paymentToken: d.paymentToken } : d.paymentMethod === "blik" ? { blikCode: d.blikCode } : { returnUrl: d.returnUrl, cancelUrl: d.cancelUrl })
		}),
		onReply: (d, r) => ({ ...d, paymentId: r.paymentId, transactionId: r.transactionId ?? null, redirectUrl: r.redirectUrl ?? null }),
		compensate: Payments.void,
		compensateParams: (d, failure) => ({ orderId: d.orderId, reason: failure.message }),
		// BLIK and PayPal answer "pending": the bank's (or PayPal's) answer comes later as an event.
		// A card is answered at once and never waits.
		await: {
			mayWait: paidLater,
			when: (_d, reply) => reply.status === "pending",
			event: PaymentEvents.authorized,
			failOn: PaymentEvents.failed,
			key: d => d.orderId,
			deadlineMs: () => settings.paymentDeadlineMs,
			onEvent: (d, e) => ({ ...d, paymentId: e.paymentId, transactionId: e.transactionId })
		}
	})
	.pivot()
	.step("confirmOrder", {
		invoke: Orders.confirm,
		params: d => ({ orderId: d.orderId, paymentId: d.paymentId })
	})
	.step("checkOutCart", {
		invoke: Carts.checkout,
		params: d => ({ cartId: d.cartId, sagaId: d.sagaId, orderId: d.orderId })
	});
