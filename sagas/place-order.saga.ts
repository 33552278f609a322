/**
 * place-order: a customer's cart becomes a confirmed, paid-for order — or nothing at all.
 *
 *   lock the cart → create the order (pending) → reserve the stock → authorize the payment
 *   (and, when the payment answers "pending", wait for the bank's answer at most
 *   PAYMENT_DEADLINE_MS) → [point of no return] → confirm the order → check the cart out
 *
 * A failure up to the payment runs the compensations of the steps already started, in
 * reverse: void the payment, release the stock, mark the order payment_failed / cancelled,
 * unlock the cart. Once the payment is authorized the order goes through: confirming it and
 * checking the cart out retry until they succeed and never undo anything.
 */
import { Carts, Inventory, Orders, PaymentEvents, Payments } from "../contracts/actions";
import type { Money } from "../contracts/money";
import { settings } from "../mixins/settings";
import { saga } from "./definition";

export interface OrderLine {
	productId: string;
	sku: string;
	name: string;
	quantity: number;
	unitPrice: Money;
}

export interface PlaceOrderData {
	sagaId: string;
	orderId: string;
	cartId: string;
	customerId: string;
	customerEmail: string;
	paymentToken: string;
	last4?: string;
	lines?: OrderLine[];
	total?: Money;
	orderNumber?: string;
	paymentId?: string;
}

export const placeOrder = saga<PlaceOrderData>("place-order")
	.step("lockCart", {
		invoke: Carts.lock,
		params: d => ({ cartId: d.cartId, sagaId: d.sagaId }),
		onReply: (d, r) => ({ ...d, lines: r.lines, total: r.total }),
		compensate: Carts.unlock,
		compensateParams: d => ({ cartId: d.cartId, sagaId: d.sagaId })
	})
	.step("createOrder", {
		invoke: Orders.create,
		params: d => ({ orderId: d.orderId, customerId: d.customerId, customerEmail: d.customerEmail, cartId: d.cartId, sagaId: d.sagaId, lines: d.lines! }),
		onReply: (d, r) => ({ ...d, orderNumber: r.orderNumber }),
		compensate: Orders.fail,
		compensateParams: (d, failure) => ({ orderId: d.orderId, reason: failure.message, code: failure.type })
	})
	.step("reserveStock", {
		invoke: Inventory.reserve,
		params: d => ({ orderId: d.orderId, lines: d.lines!.map(l => ({ sku: l.sku, quantity: l.quantity })) }),
		compensate: Inventory.release,
		compensateParams: (d, failure) => ({ orderId: d.orderId, reason: failure.message })
	})
	.step("authorizePayment", {
		invoke: Payments.authorize,
		params: d => ({ orderId: d.orderId, amount: d.total!, paymentToken: d.paymentToken }),
		onReply: (d, r) => ({ ...d, paymentId: r.paymentId }),
		compensate: Payments.void,
		compensateParams: (d, failure) => ({ orderId: d.orderId, reason: failure.message }),
		// A card answers at once; BLIK and PayPal answer "pending" and the bank's answer comes as an event.
		await: {
			event: PaymentEvents.authorized,
			failOn: PaymentEvents.failed,
			key: d => d.orderId,
			when: (_d, reply) => reply.status === "pending",
			deadlineMs: () => settings.paymentDeadlineMs,
			onEvent: (d, e) => ({ ...d, paymentId: e.paymentId })
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
