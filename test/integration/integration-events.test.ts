/**
 * The integration events outside systems subscribe to, received the way such a system would:
 * a plain amqplib consumer with its own queue bound to the `integration` topic exchange. The
 * shop's services run as separate nodes over RabbitMQ with Postgres.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { envelope } from "../../contracts/events";
import { eventually, useShop } from "../support/cluster";
import { integrationConsumer } from "../support/payments";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };
const PLN = (amount: number) => ({ amount, currency: "PLN" });
const CARD = (cardNumber: string) => ({ cardNumber, expMonth: 12, expYear: 2030, cvc: "123" });

describe("integration events for outside systems (topic exchange 'integration', real RabbitMQ)", function () {
	this.timeout(60_000);
	const shop = useShop([["customers"], ["orders"], ["payments"], ["inventory"]], ["order.placed"]);
	const call = shop.call;
	let outside: Awaited<ReturnType<typeof integrationConsumer>>;
	let paymentsOnly: Awaited<ReturnType<typeof integrationConsumer>>;

	before(async () => {
		outside = await integrationConsumer(["#"]);
		paymentsOnly = await integrationConsumer(["PaymentFailedNotification.v1", "RefundProcessedNotification.v1"]);
	});
	after(async () => {
		await outside?.close();
		await paymentsOnly?.close();
	});

	/** A product whose stock row exists: made the way inventory learns of products. */
	async function product(initialStock: number, lowStockThreshold: number) {
		const productId = randomUUID();
		const sku = `SKU-${randomUUID().slice(0, 8)}`;
		const name = `Teapot ${sku}`;
		await (shop.cluster.broker as any).sendToChannel("product.created", envelope("product.created", productId, { productId, sku, name, initialStock, lowStockThreshold }));
		await eventually(() => call("inventory.get", { sku }).catch(() => null), 15_000, "the stock row");
		return { productId, sku, name };
	}

	async function order(sku: string, quantity: number, customerId = randomUUID()) {
		const orderId = randomUUID();
		const created = await call("orders.create", {
			orderId, customerId, customerEmail: "ada@example.com",
			lines: [{ productId: randomUUID(), sku, name: "Teapot", quantity, unitPrice: PLN(2500) }]
		}, { correlationId: `corr-${orderId}` });
		return created;
	}

	it("every message is persistent JSON with the envelope: event id, type, version, time, correlation id", async () => {
		const p = await product(10, 2);
		const o = await order(p.sku, 2);
		const msg = await outside.waitFor("OrderPlacedNotification.v1", b => b.payload.orderId === o.id);
		expect(msg.properties.deliveryMode).to.equal(2);
		expect(msg.properties.contentType).to.equal("application/json");
		expect(msg.properties.messageId).to.equal(msg.body.eventId);
		expect(msg.body).to.include({ eventType: "OrderPlacedNotification", version: 1, correlationId: `corr-${o.id}`, source: "orders" });
		expect(msg.body.eventId).to.match(/^[0-9a-f-]{36}$/);
		expect(Number.isNaN(Date.parse(msg.body.occurredAt))).to.equal(false);
		expect(msg.body.payload).to.deep.equal({ orderId: o.id, orderNumber: o.orderNumber, customerId: o.customerId, totalAmount: PLN(5000), itemCount: 2 });
		// Written with the order, sent once RabbitMQ confirmed it.
		await eventually(async () => {
			const row = await shop.db.withSchema(`${process.env.SCHEMA_PREFIX}orders`).table("outbox").where({ event_id: msg.body.eventId }).first();
			return row?.target === "integration" && row.sent_at !== null;
		}, 10_000, "the outbox row marked sent");
	});

	it("OrderShipped, OrderCancelled, LowStock and OutOfStock come from orders and inventory", async () => {
		// Low stock is available stock strictly below the threshold: 3 − 2 = 1 < 2.
		const p = await product(3, 2);
		const shipped = await order(p.sku, 2);
		await call("inventory.reserve", { orderId: shipped.id, lines: [{ sku: p.sku, quantity: 2 }] });
		const low = await outside.waitFor("LowStockNotification.v1", b => b.payload.productId === p.productId);
		expect(low.body.payload).to.deep.equal({ productId: p.productId, productName: p.name, sku: p.sku, currentStock: 1, threshold: 2 });
		expect(low.body.source).to.equal("inventory");

		await call("orders.confirm", { orderId: shipped.id });
		await call("orders.ship", { orderId: shipped.id, trackingNumber: "TRK-INT-1", carrier: "DPD" }, admin);
		const s = await outside.waitFor("OrderShippedNotification.v1", b => b.payload.orderId === shipped.id);
		expect(s.body.payload).to.deep.equal({ orderId: shipped.id, orderNumber: shipped.orderNumber, customerId: shipped.customerId, trackingNumber: "TRK-INT-1", carrier: "DPD" });

		const last = await order(p.sku, 1);
		await call("inventory.reserve", { orderId: last.id, lines: [{ sku: p.sku, quantity: 1 }] });
		const out = await outside.waitFor("OutOfStockNotification.v1", b => b.payload.productId === p.productId);
		expect(out.body.payload).to.deep.equal({ productId: p.productId, productName: p.name, sku: p.sku });

		await call("orders.markCancelled", { orderId: last.id, reason: "Customer asked", refundAmount: PLN(2500) });
		const c = await outside.waitFor("OrderCancelledNotification.v1", b => b.payload.orderId === last.id);
		expect(c.body.payload).to.deep.equal({ orderId: last.id, orderNumber: last.orderNumber, customerId: last.customerId, reason: "Customer asked", refundAmount: PLN(2500) });
	});

	it("CustomerRegistered comes from customers", async () => {
		const email = `int-${randomUUID().slice(0, 8)}@example.com`;
		const customer = await call("customers.register", { email, password: "Passw0rd-long", firstName: "Grace", lastName: "Hopper" });
		const msg = await outside.waitFor("CustomerRegisteredNotification.v1", b => b.payload.customerId === customer.id);
		expect(msg.body.payload).to.deep.equal({ customerId: customer.id, email, firstName: "Grace" });
	});

	it("PaymentFailed and RefundProcessed come from payments, and a consumer bound to those keys gets only those", async () => {
		const orderId = randomUUID();
		const customerId = randomUUID();
		const declined = (await call("payments.tokenize", CARD("4000000000000002"))).paymentToken;
		await call("payments.authorize", { orderId, customerId, amount: PLN(4200), paymentToken: declined }).catch(() => undefined);
		const failed = await paymentsOnly.waitFor("PaymentFailedNotification.v1", b => b.payload.orderId === orderId);
		expect(failed.body.payload).to.deep.include({ orderId, customerId, amount: PLN(4200) });
		expect(failed.body.payload.failureReason).to.match(/declined/i);

		const paidOrder = randomUUID();
		const ok = (await call("payments.tokenize", CARD("4242424242424242"))).paymentToken;
		await call("payments.authorize", { orderId: paidOrder, customerId, amount: PLN(3000), paymentToken: ok });
		await call("payments.capture", { orderId: paidOrder });
		const refunded = await call("payments.refund", { orderId: paidOrder, amount: PLN(1200), reason: "damaged" });
		const r = await paymentsOnly.waitFor("RefundProcessedNotification.v1", b => b.payload.orderId === paidOrder);
		expect(r.body.payload).to.deep.equal({ orderId: paidOrder, customerId, paymentId: refunded.paymentId, refundAmount: PLN(1200), refundId: refunded.refunds[0].refundId });
		expect(r.body.source).to.equal("payments");

		await outside.waitFor("RefundProcessedNotification.v1", b => b.payload.orderId === paidOrder);
		expect(paymentsOnly.received.map(m => m.routingKey).every(k => k === "PaymentFailedNotification.v1" || k === "RefundProcessedNotification.v1")).to.equal(true);
		expect(paymentsOnly.received.some(m => m.routingKey === "OrderPlacedNotification.v1")).to.equal(false);
	});
});
