/**
 * An order's snapshot of its lines and totals, and how a stored order reads as the reply.
 * Pure functions: no broker, no database.
 */
import { Money, multiply, sum } from "../../contracts/money";
import type { OrderStatus } from "./status";

export interface LineInput {
	productId: string;
	sku: string;
	name: string;
	quantity: number;
	unitPrice: Money;
}

export interface OrderLine extends LineInput {
	lineTotal: Money;
}

export interface OrderRow {
	id: string;
	order_number: string;
	customer_id: string;
	customer_email: string | null;
	cart_id: string | null;
	saga_id: string | null;
	status: OrderStatus;
	currency: string;
	total_amount: string | number;
	payment_id: string | null;
	tracking_number: string | null;
	carrier: string | null;
	shipped_at: Date | string | null;
	delivered_at: Date | string | null;
	snapshot: OrderSnapshot | string | null;
	payment_method: string | null;
	cancel_reason: string | null;
	refund_amount: string | number | null;
	cancelled_at: Date | string | null;
	created_at: Date | string;
	updated_at: Date | string;
}

export interface LineRow {
	order_id: string;
	position: number;
	product_id: string;
	sku: string;
	name: string;
	quantity: number;
	unit_amount: string | number;
	line_amount: string | number;
	currency: string;
}

export interface HistoryRow {
	order_id: string;
	status: OrderStatus;
	reason: string | null;
	at: Date | string;
}

/** What the checkout decided, kept with the order as it was at placing time. */
export interface OrderSnapshot {
	shippingAddress?: Record<string, unknown> | null;
	shippingMethod?: { id: string; name: string; carrier?: string | null; price: Money } | null;
	deliveryDate?: string | null;
	express?: boolean;
	addons?: Array<{ id: string; name: string; price: Money }>;
	promotions?: Array<{ promotionId: string; code?: string | null; name: string; discount: Money }>;
	totals?: { cartTotal: number; promotionDiscount: number; shippingTotal: number; servicesTotal: number; grandTotal: number; currency: string } | null;
	paymentMethod?: string | null;
}

/** The order's payment as the payments service tells it. */
export interface OrderPayment {
	paymentId: string;
	method: string;
	status: string;
	transactionId: string | null;
	amount: Money;
	captured: Money;
	refunded: Money;
}

export interface Order {
	id: string;
	orderNumber: string;
	customerId: string;
	customerEmail: string | null;
	cartId: string | null;
	status: OrderStatus;
	lines: OrderLine[];
	total: Money;
	paymentId: string | null;
	shipment: { trackingNumber: string; carrier: string; shippedAt: string | null; deliveredAt: string | null } | null;
	statusHistory: Array<{ status: OrderStatus; at: string; reason?: string }>;
	shippingAddress: Record<string, unknown> | null;
	shippingMethod: OrderSnapshot["shippingMethod"] | null;
	deliveryDate: string | null;
	express: boolean;
	addons: NonNullable<OrderSnapshot["addons"]>;
	promotions: NonNullable<OrderSnapshot["promotions"]>;
	totals: OrderSnapshot["totals"] | null;
	paymentMethod: string | null;
	payment: OrderPayment | null;
	cancellation: { reason: string | null; refundAmount: Money | null; cancelledAt: string | null } | null;
	createdAt: string;
	updatedAt: string;
}

/** The lines' totals; every line must be in one currency (else the reason, for a 422). */
export function priceLines(lines: LineInput[]): { ok: true; lines: OrderLine[]; total: Money } | { ok: false; message: string } {
	const currency = lines[0]!.unitPrice.currency;
	const other = lines.find(l => l.unitPrice.currency !== currency);
	if (other) return { ok: false, message: `Every line must be in one currency: ${currency} and ${other.unitPrice.currency} were given` };
	const priced = lines.map(l => ({ ...l, lineTotal: multiply(l.unitPrice, l.quantity) }));
	return { ok: true, lines: priced, total: sum(priced.map(l => l.lineTotal), currency) };
}

const iso = (t: Date | string | null): string | null => (t === null ? null : new Date(t).toISOString());

export function toOrder(row: OrderRow, lines: LineRow[], history: HistoryRow[], payment: OrderPayment | null = null): Order {
	const snap: OrderSnapshot = (typeof row.snapshot === "string" ? JSON.parse(row.snapshot) : row.snapshot) ?? {};
	return {
		id: row.id,
		orderNumber: row.order_number,
		customerId: row.customer_id,
		customerEmail: row.customer_email,
		cartId: row.cart_id,
		status: row.status,
		lines: [...lines]
			.sort((a, b) => a.position - b.position)
			.map(l => ({
				productId: l.product_id,
				sku: l.sku,
				name: l.name,
				quantity: l.quantity,
				unitPrice: { amount: Number(l.unit_amount), currency: l.currency },
				lineTotal: { amount: Number(l.line_amount), currency: l.currency }
			})),
		total: { amount: Number(row.total_amount), currency: row.currency },
		paymentId: row.payment_id,
		shipment: row.tracking_number
			? { trackingNumber: row.tracking_number, carrier: row.carrier ?? "", shippedAt: iso(row.shipped_at), deliveredAt: iso(row.delivered_at) }
			: null,
		statusHistory: history.map(h => ({ status: h.status, at: iso(h.at)!, ...(h.reason ? { reason: h.reason } : {}) })),
		shippingAddress: snap.shippingAddress ?? null,
		shippingMethod: snap.shippingMethod ?? null,
		deliveryDate: snap.deliveryDate ?? null,
		express: snap.express ?? false,
		addons: snap.addons ?? [],
		promotions: snap.promotions ?? [],
		totals: snap.totals ?? null,
		paymentMethod: row.payment_method ?? snap.paymentMethod ?? null,
		payment: payment
			? { paymentId: payment.paymentId, method: payment.method, status: payment.status, transactionId: payment.transactionId, amount: payment.amount, captured: payment.captured, refunded: payment.refunded }
			: null,
		cancellation:
			row.status === "cancelled"
				? {
						reason: row.cancel_reason,
						refundAmount: row.refund_amount === null ? null : { amount: Number(row.refund_amount), currency: row.currency },
						cancelledAt: iso(row.cancelled_at)
					}
				: null,
		createdAt: iso(row.created_at)!,
		updatedAt: iso(row.updated_at)!
	};
}
