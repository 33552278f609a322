/**
 * place-order: a customer's cart becomes a confirmed, paid-for order — or nothing at all.
 *
 *   lock the cart → create the order (pending) → reserve the stock → authorize the payment
 *   → confirm the order → check the cart out
 *
 * A failure runs the compensations of the steps already started, in reverse: void the
 * payment, release the stock, mark the order payment_failed / cancelled, unlock the cart.
 */
import type { Money } from "../contracts/money";
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
	// How it is paid.
	paymentMethod: PaymentMethod;
	paymentToken?: string;
	last4?: string;
	blikCode?: string;
	returnUrl?: string;
	cancelUrl?: string;
	// Learnt on the way.
	total?: Money;
	orderNumber?: string;
	paymentId?: string;
	transactionId?: string;
	redirectUrl?: string;
}

export const placeOrder = saga<PlaceOrderData>("place-order")
	.step("lockCart", {
		invoke: "carts.lock",
		params: d => ({ cartId: d.cartId, sagaId: d.sagaId, expectedTotal: { amount: d.totals.cartTotal, currency: d.totals.currency } }),
		onReply: (d, r) => ({ ...d, lines: r.lines }),
		compensate: "carts.unlock",
		compensateParams: d => ({ cartId: d.cartId, sagaId: d.sagaId })
	})
	.step("createOrder", {
		invoke: "orders.create",
		params: d => ({ orderId: d.orderId, customerId: d.customerId, customerEmail: d.customerEmail, cartId: d.cartId, sagaId: d.sagaId, lines: d.lines }),
		onReply: (d, r) => ({ ...d, orderNumber: r.orderNumber }),
		compensate: "orders.fail",
		compensateParams: (d, failure) => ({ orderId: d.orderId, reason: failure.message, code: failure.type })
	})
	.step("reserveStock", {
		invoke: "inventory.reserve",
		params: d => ({ orderId: d.orderId, lines: d.lines!.map(l => ({ sku: l.sku, quantity: l.quantity })) }),
		compensate: "inventory.release",
		compensateParams: (d, failure) => ({ orderId: d.orderId, reason: failure.message })
	})
	.step("authorizePayment", {
		invoke: "payments.authorize",
		params: d => ({ orderId: d.orderId, amount: { amount: d.totals.grandTotal, currency: d.totals.currency }, paymentToken: d.paymentToken }),
		onReply: (d, r) => ({ ...d, paymentId: r.paymentId }),
		compensate: "payments.void",
		compensateParams: (d, failure) => ({ orderId: d.orderId, reason: failure.message })
	})
	.step("confirmOrder", {
		invoke: "orders.confirm",
		params: d => ({ orderId: d.orderId, paymentId: d.paymentId })
	})
	.step("checkOutCart", {
		invoke: "carts.checkout",
		params: d => ({ cartId: d.cartId, sagaId: d.sagaId, orderId: d.orderId })
	});
