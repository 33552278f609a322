/**
 * orders on a real Moleculer node over RabbitMQ, data in Postgres: the calls come from a
 * separate client node, the events are observed on their channels.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { envelope } from "../../contracts/events";
import { eventually, refusal, useShop } from "../support/cluster";
import type { Http } from "../support/http";
import { CountingProvider, gatewayOf, tokenFor } from "../support/payments";

const EVENTS = ["order.placed", "order.confirmed", "order.status_changed", "order.cancelled", "order.shipped", "order.delivered", "inventory.deducted", "payment.captured", "payment.refunded"];
const SCHEMA = `${process.env.SCHEMA_PREFIX}orders`;

const admin = (id = randomUUID()) => ({ user: { id, role: "admin", email: "admin@test.local" } });
const customer = (id: string) => ({ user: { id, role: "customer", email: `${id.slice(0, 8)}@example.com` } });

function orderParams(overrides: Record<string, unknown> = {}) {
	return {
		orderId: randomUUID(),
		customerId: randomUUID(),
		customerEmail: "ada@example.com",
		cartId: randomUUID(),
		sagaId: randomUUID(),
		lines: [
			{ productId: randomUUID(), sku: "MUG-1", name: "Mug", quantity: 2, unitPrice: { amount: 1250, currency: "PLN" } },
			{ productId: randomUUID(), sku: "TEA-7", name: "Tea", quantity: 3, unitPrice: { amount: 999, currency: "PLN" } }
		],
		...overrides
	};
}

const settle = () => new Promise(r => setTimeout(r, 600)); // a duplicate event would have arrived by now

describe("orders service (real RabbitMQ and Postgres)", function () {
	this.timeout(60_000);
	const shop = useShop([["api"], ["orders"], ["payments"], ["inventory"]], EVENTS);
	const call = shop.call;
	let http: Http;
	let provider: CountingProvider;
	/** Stands in for the checkout's cancel-order saga (another part of the shop): records what orders asks of it. */
	const cancelRequests: any[] = [];

	before(async () => {
		http = gatewayOf(shop.cluster);
		const svc: any = shop.cluster.brokers[2]!.getLocalService("payments");
		provider = new CountingProvider(svc.provider);
		svc.provider = provider;
		shop.cluster.brokers[3]!.createService({
			name: "checkout",
			actions: { cancelOrder: (ctx: any) => (cancelRequests.push(ctx.params), { sagaId: randomUUID(), status: "running" }) }
		});
		await shop.cluster.broker.waitForServices("checkout");
	});

	/** A pending order whose lines' stock exists and is reserved for it, as the place-order saga leaves it. */
	async function reservedOrder(overrides: Record<string, unknown> = {}) {
		const skus = [`SKU-${randomUUID().slice(0, 8)}`, `SKU-${randomUUID().slice(0, 8)}`];
		for (const sku of skus) {
			const productId = randomUUID();
			await (shop.cluster.broker as any).sendToChannel("product.created", envelope("product.created", productId, { productId, sku, name: `Product ${sku}`, initialStock: 10, lowStockThreshold: 2 }));
		}
		await eventually(async () => (await Promise.all(skus.map(sku => call("inventory.get", { sku }).catch(() => null)))).every(Boolean), 15_000, "stock rows");
		const params = orderParams(overrides);
		params.lines = params.lines.map((l: any, i: number) => ({ ...l, sku: skus[i] }));
		const order = await call("orders.create", params);
		await call("inventory.reserve", { orderId: order.id, lines: order.lines.map((l: any) => ({ sku: l.sku, quantity: l.quantity })) });
		return order;
	}

	/** …and paid by card: authorized, then confirmed. */
	async function paidOrder(overrides: Record<string, unknown> = {}) {
		const order = await reservedOrder(overrides);
		const { paymentToken } = await call("payments.tokenize", { cardNumber: "4242424242424242", expMonth: 12, expYear: 2030, cvc: "123" });
		const payment = await call("payments.authorize", { orderId: order.id, customerId: order.customerId, amount: order.total, paymentToken, idempotencyKey: `${order.id}:authorizePayment` });
		await call("orders.confirm", { orderId: order.id, paymentId: payment.paymentId });
		return { order, payment };
	}

	const stock = (sku: string) => call("inventory.get", { sku });

	async function created(overrides: Record<string, unknown> = {}) {
		return call("orders.create", orderParams(overrides));
	}

	describe("create", () => {
		it("a new order is pending, numbered, with a snapshot of its lines and totals, and order.placed is published", async () => {
			const params = orderParams();
			const order = await call("orders.create", params);
			expect(order).to.include({ id: params.orderId, customerId: params.customerId, customerEmail: "ada@example.com", status: "pending", cartId: params.cartId, paymentId: null });
			expect(order.orderNumber).to.match(/^SC-\d{4}-\d{6,}$/);
			expect(order.lines.map((l: any) => [l.sku, l.quantity, l.lineTotal.amount])).to.deep.equal([["MUG-1", 2, 2500], ["TEA-7", 3, 2997]]);
			expect(order.total).to.deep.equal({ amount: 5497, currency: "PLN" });
			expect(order.statusHistory.map((h: any) => h.status)).to.deep.equal(["pending"]);

			const placed = await shop.events.waitFor("order.placed", e => e.aggregate_id === order.id);
			expect(placed.payload).to.deep.include({ orderId: order.id, orderNumber: order.orderNumber, customerId: params.customerId, customerEmail: "ada@example.com", status: "pending" });
			expect(placed.payload.total).to.deep.equal({ amount: 5497, currency: "PLN" });
			expect(placed.payload.lines).to.have.length(2);
		});

		it("order numbers are unique and grow", async () => {
			const a = await created();
			const b = await created();
			expect(a.orderNumber).to.not.equal(b.orderNumber);
			expect(Number(b.orderNumber.split("-")[2])).to.be.greaterThan(Number(a.orderNumber.split("-")[2]));
		});

		it("creating the same orderId twice (with or without the same key) gives one order and one order.placed", async () => {
			const params = orderParams();
			const first = await call("orders.create", { ...params, idempotencyKey: `${params.sagaId}:createOrder` });
			const again = await call("orders.create", { ...params, idempotencyKey: `${params.sagaId}:createOrder` });
			const third = await call("orders.create", params);
			expect(again).to.deep.equal(first);
			expect(third.orderNumber).to.equal(first.orderNumber);
			await shop.events.waitFor("order.placed", e => e.aggregate_id === params.orderId);
			await settle();
			expect(shop.events.of("order.placed", params.orderId)).to.have.length(1);
			expect((await call("orders.list", { customerId: params.customerId })).total).to.equal(1);
		});

		it("lines in two currencies are refused with 422 and no order is made", async () => {
			const params = orderParams();
			params.lines[1]!.unitPrice = { amount: 999, currency: "EUR" };
			const err = await refusal(call("orders.create", params));
			expect(err.code).to.equal(422);
			expect(err.type).to.equal("VALIDATION_ERROR");
			expect(err.data[0].field).to.equal("lines");
			expect((await refusal(call("orders.get", { id: params.orderId }))).code).to.equal(404);
		});

		it("an order without lines, or with a quantity below 1, is refused with 422", async () => {
			expect((await refusal(call("orders.create", orderParams({ lines: [] })))).code).to.equal(422);
			const zero = orderParams();
			zero.lines[0]!.quantity = 0;
			const err = await refusal(call("orders.create", zero));
			expect(err.code).to.equal(422);
			expect(err.data.map((d: any) => d.field)).to.include("lines.0.quantity");
		});
	});

	describe("confirm", () => {
		it("a pending order is confirmed with its payment; order.confirmed and order.status_changed are published", async () => {
			const order = await created();
			const paymentId = randomUUID();
			const confirmed = await call("orders.confirm", { orderId: order.id, paymentId });
			expect(confirmed).to.include({ status: "confirmed", paymentId });
			expect(confirmed.statusHistory.map((h: any) => h.status)).to.deep.equal(["pending", "confirmed"]);
			const ev = await shop.events.waitFor("order.confirmed", e => e.aggregate_id === order.id);
			expect(ev.payload).to.include({ orderId: order.id, orderNumber: order.orderNumber, paymentId });
			const changed = await shop.events.waitFor("order.status_changed", e => e.aggregate_id === order.id);
			expect(changed.payload).to.include({ orderId: order.id, from: "pending", to: "confirmed" });
		});

		it("confirming a confirmed order again answers it unchanged and publishes nothing more", async () => {
			const order = await created();
			const first = await call("orders.confirm", { orderId: order.id, idempotencyKey: `${order.id}:confirm` });
			const replay = await call("orders.confirm", { orderId: order.id, idempotencyKey: `${order.id}:confirm` });
			const again = await call("orders.confirm", { orderId: order.id });
			expect(replay).to.deep.equal(first);
			expect(again.statusHistory).to.have.length(2);
			await shop.events.waitFor("order.confirmed", e => e.aggregate_id === order.id);
			await settle();
			expect(shop.events.of("order.confirmed", order.id)).to.have.length(1);
			expect(shop.events.of("order.status_changed", order.id)).to.have.length(1);
		});

		it("an unknown order answers 404", async () => {
			const err = await refusal(call("orders.confirm", { orderId: randomUUID() }));
			expect(err.code).to.equal(404);
			expect(err.type).to.equal("NOT_FOUND");
		});

		it("a cancelled order cannot be confirmed: 409 INVALID_TRANSITION and nothing changes", async () => {
			const order = await created();
			await call("orders.fail", { orderId: order.id, reason: "Out of stock", code: "OUT_OF_STOCK" });
			const before = await call("orders.get", { id: order.id });
			const err = await refusal(call("orders.confirm", { orderId: order.id, paymentId: randomUUID() }));
			expect(err.code).to.equal(409);
			expect(err.type).to.equal("INVALID_TRANSITION");
			expect(await call("orders.get", { id: order.id })).to.deep.equal(before);
			await settle();
			expect(shop.events.of("order.confirmed", order.id)).to.have.length(0);
		});

		it("an order awaiting its payment (BLIK, PayPal) can be confirmed once the payment arrives", async () => {
			const order = await created();
			expect((await call("orders.markAwaitingPayment", { orderId: order.id })).status).to.equal("awaiting_payment");
			expect((await call("orders.markAwaitingPayment", { orderId: order.id })).statusHistory).to.have.length(2);
			const confirmed = await call("orders.confirm", { orderId: order.id });
			expect(confirmed.statusHistory.map((h: any) => h.status)).to.deep.equal(["pending", "awaiting_payment", "confirmed"]);
			expect((await refusal(call("orders.markAwaitingPayment", { orderId: order.id }))).type).to.equal("INVALID_TRANSITION");
		});
	});

	describe("fail (the saga's compensation)", () => {
		it("a payment refusal leaves the order payment_failed with the reason in its history", async () => {
			const order = await created();
			const failed = await call("orders.fail", { orderId: order.id, reason: "The card was declined by its issuer", code: "PAYMENT_DECLINED" });
			expect(failed.status).to.equal("payment_failed");
			expect(failed.statusHistory.at(-1)).to.include({ status: "payment_failed", reason: "The card was declined by its issuer" });
			const changed = await shop.events.waitFor("order.status_changed", e => e.aggregate_id === order.id);
			expect(changed.payload).to.include({ from: "pending", to: "payment_failed" });
			await settle();
			expect(shop.events.of("order.cancelled", order.id)).to.have.length(0);
		});

		it("any other failure cancels the order and publishes order.cancelled with the reason", async () => {
			const order = await created();
			const failed = await call("orders.fail", { orderId: order.id, reason: "Not enough stock", code: "OUT_OF_STOCK" });
			expect(failed.status).to.equal("cancelled");
			const cancelled = await shop.events.waitFor("order.cancelled", e => e.aggregate_id === order.id);
			expect(cancelled.payload).to.include({ orderId: order.id, reason: "Not enough stock" });
		});

		it("failing an order already failed changes nothing", async () => {
			const order = await created();
			const first = await call("orders.fail", { orderId: order.id, reason: "declined", code: "PAYMENT_DECLINED" });
			const again = await call("orders.fail", { orderId: order.id, reason: "something else", code: "OUT_OF_STOCK" });
			expect(again.status).to.equal("payment_failed");
			expect(again.statusHistory).to.deep.equal(first.statusHistory);
		});

		it("failing an unknown order is a no-op answering null, and that order can no longer be created late", async () => {
			const params = orderParams();
			expect(await call("orders.fail", { orderId: params.orderId, reason: "timed out", code: "TEMPORARILY_UNAVAILABLE" })).to.equal(null);
			expect((await refusal(call("orders.get", { id: params.orderId }))).code).to.equal(404);
			const late = await refusal(call("orders.create", params));
			expect(late.code).to.equal(409);
			expect((await refusal(call("orders.get", { id: params.orderId }))).code).to.equal(404);
		});

		it("a confirmed order cannot be failed: 409 INVALID_TRANSITION and it stays confirmed", async () => {
			const order = await created();
			await call("orders.confirm", { orderId: order.id });
			const err = await refusal(call("orders.fail", { orderId: order.id, reason: "late compensation", code: "PAYMENT_DECLINED" }));
			expect(err.code).to.equal(409);
			expect(err.type).to.equal("INVALID_TRANSITION");
			expect((await call("orders.get", { id: order.id })).status).to.equal("confirmed");
		});
	});

	describe("ship and deliver", () => {
		it("shipping without a tracking number is refused with 422 and the order stays confirmed", async () => {
			const order = await created();
			await call("orders.confirm", { orderId: order.id });
			const err = await refusal(call("orders.ship", { orderId: order.id, carrier: "DHL" }, admin()));
			expect(err.code).to.equal(422);
			expect(err.data.map((d: any) => d.field)).to.include("trackingNumber");
			const blank = await refusal(call("orders.ship", { orderId: order.id, trackingNumber: "  ", carrier: "DHL" }, admin()));
			expect(blank.code).to.equal(422);
			const after = await call("orders.get", { id: order.id });
			expect(after.status).to.equal("confirmed");
			expect(after.shipment).to.equal(null);
		});

		it("an order that is not confirmed cannot be shipped, nor an unknown one", async () => {
			const order = await created();
			const err = await refusal(call("orders.ship", { orderId: order.id, trackingNumber: "TRK1", carrier: "DHL" }, admin()));
			expect(err.code).to.equal(409);
			expect(err.type).to.equal("INVALID_TRANSITION");
			expect((await call("orders.get", { id: order.id })).status).to.equal("pending");
			expect((await refusal(call("orders.ship", { orderId: randomUUID(), trackingNumber: "TRK1", carrier: "DHL" }, admin()))).code).to.equal(404);
		});

		it("a customer cannot ship an order", async () => {
			const order = await created();
			await call("orders.confirm", { orderId: order.id });
			const err = await refusal(call("orders.ship", { orderId: order.id, trackingNumber: "TRK1", carrier: "DHL" }, customer(order.customerId)));
			expect(err.code).to.equal(403);
			expect((await call("orders.get", { id: order.id })).status).to.equal("confirmed");
		});

		it("a confirmed order is shipped with its tracking number, then delivered, each with its event", async () => {
			const order = await reservedOrder();
			await call("orders.confirm", { orderId: order.id });
			expect((await refusal(call("orders.deliver", { orderId: order.id }, admin()))).type).to.equal("INVALID_TRANSITION");

			const shipped = await call("orders.ship", { orderId: order.id, trackingNumber: "00340434161234567890", carrier: "DHL" }, admin());
			expect(shipped.status).to.equal("shipped");
			expect(shipped.shipment).to.include({ trackingNumber: "00340434161234567890", carrier: "DHL" });
			const ev = await shop.events.waitFor("order.shipped", e => e.aggregate_id === order.id);
			expect(ev.payload).to.include({ orderId: order.id, orderNumber: order.orderNumber, trackingNumber: "00340434161234567890", carrier: "DHL" });
			// The same shipment again is answered as it is; another tracking number is refused.
			expect((await call("orders.ship", { orderId: order.id, trackingNumber: "00340434161234567890", carrier: "DHL" }, admin())).statusHistory).to.have.length(3);
			expect((await refusal(call("orders.ship", { orderId: order.id, trackingNumber: "OTHER", carrier: "DHL" }, admin()))).code).to.equal(409);

			const delivered = await call("orders.deliver", { orderId: order.id }, admin());
			expect(delivered.status).to.equal("delivered");
			expect(delivered.shipment.deliveredAt).to.be.a("string");
			await shop.events.waitFor("order.delivered", e => e.aggregate_id === order.id);
			expect(delivered.statusHistory.map((h: any) => h.status)).to.deep.equal(["pending", "confirmed", "shipped", "delivered"]);
			const cancel = await refusal(call("orders.fail", { orderId: order.id, reason: "too late" }));
			expect(cancel.type).to.equal("INVALID_TRANSITION");
		});
	});

	describe("reading orders", () => {
		it("a customer reads their own order; another customer gets 404; an admin reads any", async () => {
			const order = await created();
			expect((await call("orders.get", { id: order.id }, customer(order.customerId))).id).to.equal(order.id);
			const err = await refusal(call("orders.get", { id: order.id }, customer(randomUUID())));
			expect(err.code).to.equal(404);
			expect(err.type).to.equal("NOT_FOUND");
			expect((await call("orders.get", { id: order.id }, admin())).id).to.equal(order.id);
			expect((await refusal(call("orders.get", { id: "not-a-uuid" }))).code).to.equal(422);
		});

		it("a customer lists only their own orders, newest first; an admin lists everyone's and can filter", async () => {
			const a = randomUUID();
			const b = randomUUID();
			const a1 = await created({ customerId: a });
			const a2 = await created({ customerId: a });
			const b1 = await created({ customerId: b });
			await call("orders.confirm", { orderId: a2.id });

			const mine = await call("orders.list", {}, customer(a));
			expect(mine).to.include({ total: 2, page: 1, pageSize: 20 });
			expect(mine.rows.map((o: any) => o.id)).to.deep.equal([a2.id, a1.id]);
			// A customer cannot look at someone else's orders by naming them.
			expect((await call("orders.list", { customerId: b }, customer(a))).rows.map((o: any) => o.id)).to.deep.equal([a2.id, a1.id]);
			expect((await call("orders.list", { status: "confirmed" }, customer(a))).rows.map((o: any) => o.id)).to.deep.equal([a2.id]);
			expect((await call("orders.list", { page: 2, pageSize: 1 }, customer(a))).rows.map((o: any) => o.id)).to.deep.equal([a1.id]);

			const all = await call("orders.list", { pageSize: 100 }, admin());
			expect(all.total).to.be.at.least(3);
			expect(all.rows.map((o: any) => o.id)).to.include.members([a1.id, a2.id, b1.id]);
			expect((await call("orders.list", { customerId: b }, admin())).rows.map((o: any) => o.id)).to.deep.equal([b1.id]);
			expect((await refusal(call("orders.list", { pageSize: 101 }, admin()))).code).to.equal(422);
		});
	});

	describe("GDPR erasure", () => {
		it("customer.erased anonymizes that customer's orders once, even when delivered twice", async () => {
			const erased = randomUUID();
			const kept = randomUUID();
			const o1 = await created({ customerId: erased, customerEmail: "gone@example.com" });
			const o2 = await created({ customerId: erased, customerEmail: "gone@example.com" });
			const other = await created({ customerId: kept, customerEmail: "kept@example.com" });
			await shop.events.waitFor("order.placed", e => e.aggregate_id === o2.id);

			const env = envelope("customer.erased", erased, { customerId: erased });
			await (shop.cluster.broker as any).sendToChannel("customer.erased", env);
			await eventually(async () => (await call("orders.get", { id: o1.id })).customerEmail === null, 10_000, "the orders to be anonymized");
			const stamped = await shop.db.withSchema(SCHEMA).table("orders").where({ customer_id: erased }).select("id", "anonymized_at");

			await (shop.cluster.broker as any).sendToChannel("customer.erased", env);
			await eventually(async () => {
				const r = await shop.db.withSchema(SCHEMA).table("inbox").where({ event_id: env.event_id }).count<{ n: string }[]>("* as n");
				return Number(r[0]!.n) === 1;
			});
			await settle();

			for (const id of [o1.id, o2.id]) {
				const o = await call("orders.get", { id });
				expect(o.customerEmail).to.equal(null);
				expect(o.customerId, "the order keeps the (anonymous) customer id").to.equal(erased);
				expect(o.lines).to.have.length(2);
			}
			expect((await call("orders.get", { id: other.id })).customerEmail).to.equal("kept@example.com");
			const again = await shop.db.withSchema(SCHEMA).table("orders").where({ customer_id: erased }).select("id", "anonymized_at");
			expect(again).to.deep.equal(stamped);
			expect((await shop.db.withSchema(SCHEMA).table("inbox").where({ event_id: env.event_id })).length).to.equal(1);
			// The events kept in the outbox no longer carry the email either.
			const outbox = await shop.db.withSchema(SCHEMA).table("outbox").whereIn("aggregate_id", [o1.id, o2.id]);
			expect(JSON.stringify(outbox.map(r => r.envelope))).to.not.include("gone@example.com");
		});
	});

	describe("the checkout's snapshot", () => {
		const snapshot = {
			shippingAddress: { recipientName: "Ada Lovelace", street: "Marszałkowska 1", city: "Warszawa", postalCode: "00-001", country: "PL" },
			shippingMethod: { id: "courier", name: "Courier", carrier: "DPD", price: { amount: 1500, currency: "PLN" } },
			deliveryDate: "2030-01-15",
			express: true,
			addons: [{ id: "gift-wrap", name: "Gift wrap", price: { amount: 900, currency: "PLN" } }],
			promotions: [{ promotionId: "promo-10", code: "TEN", name: "10% off", discount: { amount: 550, currency: "PLN" } }],
			totals: { cartTotal: 5497, promotionDiscount: 550, shippingTotal: 2000, servicesTotal: 900, grandTotal: 7847, currency: "PLN" },
			paymentMethod: "blik"
		};

		it("an order made with the checkout's snapshot keeps it and shows it; its total is the grand total", async () => {
			const params = { ...orderParams(), ...snapshot };
			const order = await call("orders.create", params);
			expect(order.total).to.deep.equal({ amount: 7847, currency: "PLN" });
			const read = await call("orders.get", { id: order.id });
			expect(read).to.deep.include({ shippingAddress: snapshot.shippingAddress, shippingMethod: snapshot.shippingMethod, deliveryDate: "2030-01-15", express: true, paymentMethod: "blik" });
			expect(read.addons).to.deep.equal(snapshot.addons);
			expect(read.promotions).to.deep.equal(snapshot.promotions);
			expect(read.totals).to.deep.equal(snapshot.totals);
			expect(read.payment).to.equal(null);
			const placed = await shop.events.waitFor("order.placed", e => e.aggregate_id === order.id);
			expect(placed.payload).to.deep.include({ totals: snapshot.totals, paymentMethod: "blik" });
			expect(placed.payload).to.not.have.property("shippingAddress");
		});

		it("totals in another currency than the lines are refused with 422 and no order is made", async () => {
			const params = { ...orderParams(), ...snapshot, totals: { ...snapshot.totals, currency: "EUR" } };
			const err = await refusal(call("orders.create", params));
			expect(err.code).to.equal(422);
			expect(err.data[0].field).to.equal("totals.currency");
			expect((await refusal(call("orders.get", { id: params.orderId }))).code).to.equal(404);
			const badMethod = await refusal(call("orders.create", { ...orderParams(), paymentMethod: "cash" }));
			expect(badMethod.data.map((d: any) => d.field)).to.include("paymentMethod");
		});

		it("GDPR erasure clears the address kept in the snapshot", async () => {
			const customerId = randomUUID();
			const order = await call("orders.create", { ...orderParams({ customerId }), ...snapshot, idempotencyKey: `${randomUUID()}:createOrder` });
			await (shop.cluster.broker as any).sendToChannel("customer.erased", envelope("customer.erased", customerId, { customerId }));
			await eventually(async () => (await call("orders.get", { id: order.id })).shippingAddress === null, 10_000, "the address to be erased");
			const kept = await shop.db.withSchema(SCHEMA).table("idempotency_keys").whereRaw(`result->>'id' = ?`, [order.id]);
			expect(kept, "no stored answer keeps the address").to.deep.equal([]);
			expect((await call("orders.get", { id: order.id })).totals).to.deep.equal(snapshot.totals);
		});
	});

	describe("shipping takes the stock and the money", () => {
		it("ship deducts the reserved stock and captures the payment; the order shows the captured payment", async () => {
			const { order, payment } = await paidOrder();
			const before = await stock(order.lines[0].sku);
			expect(before).to.include({ onHand: 10, reserved: order.lines[0].quantity });
			const shipped = await call("orders.ship", { orderId: order.id, trackingNumber: "TRK-42", carrier: "DPD" }, admin());
			expect(shipped.status).to.equal("shipped");
			expect(shipped.payment).to.deep.include({ paymentId: payment.paymentId, method: "card", status: "captured", transactionId: payment.transactionId, amount: order.total, captured: order.total });
			expect(await stock(order.lines[0].sku)).to.include({ onHand: 10 - order.lines[0].quantity, reserved: 0 });
			await shop.events.waitFor("inventory.deducted", e => e.payload.orderId === order.id);
			await shop.events.waitFor("payment.captured", e => e.payload.orderId === order.id);
			expect((await call("orders.get", { id: order.id })).payment.status).to.equal("captured");
		});

		it("a ship that fails half-way (capture unavailable) leaves the order confirmed; sent again it finishes, deducting and capturing once", async () => {
			const { order } = await paidOrder();
			provider.failNext = "capture";
			const err = await refusal(call("orders.ship", { orderId: order.id, trackingNumber: "TRK-43", carrier: "DPD" }, admin()));
			expect(err.code).to.equal(503);
			expect((await call("orders.get", { id: order.id })).status).to.equal("confirmed");
			const shipped = await call("orders.ship", { orderId: order.id, trackingNumber: "TRK-43", carrier: "DPD" }, admin());
			expect(shipped.status).to.equal("shipped");
			expect(await stock(order.lines[0].sku)).to.include({ onHand: 10 - order.lines[0].quantity, reserved: 0 });
			await shop.events.waitFor("payment.captured", e => e.payload.orderId === order.id);
			await settle();
			expect(shop.events.of("inventory.deducted").filter(e => e.payload.orderId === order.id)).to.have.length(1);
			expect(shop.events.of("payment.captured").filter(e => e.payload.orderId === order.id)).to.have.length(1);
		});

		it("an order whose payment was voided cannot ship: 409, and the stock stays reserved", async () => {
			const { order } = await paidOrder();
			await call("payments.void", { orderId: order.id, reason: "fraud check" });
			const err = await refusal(call("orders.ship", { orderId: order.id, trackingNumber: "TRK-44", carrier: "DPD" }, admin()));
			expect(err.code).to.equal(409);
			expect(err.type).to.equal("INVALID_TRANSITION");
			expect(await stock(order.lines[0].sku)).to.include({ onHand: 10, reserved: order.lines[0].quantity });
			expect((await call("orders.get", { id: order.id })).status).to.equal("confirmed");
		});

		it("shipping an order not yet confirmed is refused before any stock or money moves", async () => {
			const order = await reservedOrder();
			const err = await refusal(call("orders.ship", { orderId: order.id, trackingNumber: "TRK-45", carrier: "DPD" }, admin()));
			expect(err.type).to.equal("INVALID_TRANSITION");
			expect(await stock(order.lines[0].sku)).to.include({ onHand: 10, reserved: order.lines[0].quantity });
		});
	});

	describe("cancel (CancelOrder)", () => {
		it("the owner's cancel of a confirmed order asks the cancel-order saga, once per order, and answers 202", async () => {
			const { order } = await paidOrder();
			const res = await http.post(`/api/orders/${order.id}/cancel`, { reason: "Changed my mind" }, tokenFor({ id: order.customerId, role: "customer" }));
			expect(res.status).to.equal(202);
			expect(res.body).to.include({ id: order.id, status: "confirmed" });
			const asked = cancelRequests.filter(r => r.orderId === order.id);
			expect(asked).to.have.length(1);
			expect(asked[0]).to.deep.equal({ orderId: order.id, reason: "Changed my mind", requestedBy: order.customerId, idempotencyKey: `${order.id}:cancel` });
		});

		it("an admin may cancel anyone's order; another customer gets 404 and nothing is asked", async () => {
			const { order } = await paidOrder();
			const stranger = await http.post(`/api/orders/${order.id}/cancel`, { reason: "mine now" }, tokenFor({ id: randomUUID(), role: "customer" }));
			expect(stranger.status).to.equal(404);
			expect(cancelRequests.filter(r => r.orderId === order.id)).to.have.length(0);
			const adminId = randomUUID();
			expect((await http.post(`/api/orders/${order.id}/cancel`, { reason: "Fraud suspected" }, tokenFor({ id: adminId, role: "admin" }))).status).to.equal(202);
			expect(cancelRequests.filter(r => r.orderId === order.id).map(r => r.requestedBy)).to.deep.equal([adminId]);
		});

		it("order not found: 404; without a reason: 422; nothing is asked", async () => {
			const unknown = randomUUID();
			expect((await http.post(`/api/orders/${unknown}/cancel`, { reason: "x" }, tokenFor({ id: randomUUID(), role: "admin" }))).status).to.equal(404);
			const { order } = await paidOrder();
			const noReason = await http.post(`/api/orders/${order.id}/cancel`, {}, tokenFor({ id: order.customerId, role: "customer" }));
			expect(noReason.status).to.equal(422);
			expect(noReason.body.data.map((d: any) => d.field)).to.include("reason");
			expect(cancelRequests.filter(r => r.orderId === unknown || r.orderId === order.id)).to.have.length(0);
		});

		it("already shipped (or delivered, or ended): 409 INVALID_TRANSITION and nothing changes", async () => {
			const { order } = await paidOrder();
			await call("orders.ship", { orderId: order.id, trackingNumber: "TRK-50", carrier: "DPD" }, admin());
			const before = await call("orders.get", { id: order.id });
			const res = await http.post(`/api/orders/${order.id}/cancel`, { reason: "too late" }, tokenFor({ id: order.customerId, role: "customer" }));
			expect(res.status).to.equal(409);
			expect(res.body.type).to.equal("INVALID_TRANSITION");
			expect(res.body.message).to.match(/shipped/);
			await call("orders.deliver", { orderId: order.id }, admin());
			expect((await refusal(call("orders.cancel", { orderId: order.id, reason: "later still" }))).type).to.equal("INVALID_TRANSITION");
			const failed = await created();
			await call("orders.fail", { orderId: failed.id, reason: "declined", code: "PAYMENT_DECLINED" });
			expect((await refusal(call("orders.cancel", { orderId: failed.id, reason: "x" }))).type).to.equal("INVALID_TRANSITION");
			expect(cancelRequests.filter(r => r.orderId === order.id || r.orderId === failed.id)).to.have.length(0);
			const after = await call("orders.get", { id: order.id });
			expect(after.statusHistory).to.have.length(before.statusHistory.length + 1); // + delivered only
			expect(after.payment.status).to.equal("captured");
		});

		it("markCancelled (the saga's last step) cancels with the reason and refund, order.cancelled once; a shipped order is refused", async () => {
			const { order } = await paidOrder();
			const key = `${randomUUID()}:markCancelled`;
			const cancelled = await call("orders.markCancelled", { orderId: order.id, reason: "Changed my mind", refundAmount: null, idempotencyKey: key });
			expect(cancelled.status).to.equal("cancelled");
			expect(cancelled.cancellation).to.deep.include({ reason: "Changed my mind", refundAmount: null });
			expect(cancelled.statusHistory.map((h: any) => h.status)).to.deep.equal(["pending", "confirmed", "cancelled"]);
			expect(await call("orders.markCancelled", { orderId: order.id, reason: "Changed my mind", idempotencyKey: key })).to.deep.equal(cancelled);
			expect((await call("orders.markCancelled", { orderId: order.id, reason: "again" })).statusHistory).to.have.length(3);
			const ev = await shop.events.waitFor("order.cancelled", e => e.aggregate_id === order.id);
			expect(ev.payload).to.include({ orderId: order.id, reason: "Changed my mind" });
			await settle();
			expect(shop.events.of("order.cancelled", order.id)).to.have.length(1);

			const shipped = (await paidOrder()).order;
			await call("orders.ship", { orderId: shipped.id, trackingNumber: "TRK-51", carrier: "DPD" }, admin());
			const err = await refusal(call("orders.markCancelled", { orderId: shipped.id, reason: "too late", refundAmount: { amount: 100, currency: "PLN" } }));
			expect(err.type).to.equal("INVALID_TRANSITION");
			expect((await call("orders.get", { id: shipped.id })).status).to.equal("shipped");
		});

		it("a cancel after a refund records the refunded amount", async () => {
			const order = await reservedOrder();
			const done = await call("orders.markCancelled", { orderId: order.id, reason: "Out of stock at the warehouse", refundAmount: { amount: 1234, currency: "PLN" } });
			expect(done.cancellation.refundAmount).to.deep.equal({ amount: 1234, currency: "PLN" });
			const ev = await shop.events.waitFor("order.cancelled", e => e.aggregate_id === order.id);
			expect(ev.payload.refundAmount).to.deep.equal({ amount: 1234, currency: "PLN" });
		});
	});

	describe("refunds (RefundPayment)", () => {
		async function shippedOrder() {
			const { order, payment } = await paidOrder();
			await call("orders.ship", { orderId: order.id, trackingNumber: `TRK-${randomUUID().slice(0, 6)}`, carrier: "DPD" }, admin());
			return { order, payment };
		}

		it("an admin refunds part, then the rest, through HTTP; never more than captured (409), nothing changes when refused", async () => {
			const { order } = await shippedOrder();
			const adminToken = tokenFor({ id: randomUUID(), role: "admin" });
			const part = await http.post(`/api/orders/${order.id}/refund`, { amount: { amount: 1000, currency: "PLN" }, reason: "one mug broken" }, adminToken);
			expect(part.status).to.equal(200);
			expect(part.body.payment).to.deep.include({ status: "partially_refunded", refunded: { amount: 1000, currency: "PLN" } });
			const tooMuch = await http.post(`/api/orders/${order.id}/refund`, { amount: { amount: order.total.amount, currency: "PLN" }, reason: "all of it again" }, adminToken);
			expect(tooMuch.status).to.equal(409);
			expect(tooMuch.body.type).to.equal("REFUND_EXCEEDS_CAPTURED");
			expect((await call("orders.get", { id: order.id })).payment.refunded).to.deep.equal({ amount: 1000, currency: "PLN" });
			const rest = await http.post(`/api/orders/${order.id}/refund`, { reason: "returned" }, adminToken);
			expect(rest.status).to.equal(200);
			expect(rest.body.payment).to.deep.include({ status: "refunded", refunded: order.total });
			await settle();
			expect(shop.events.of("payment.refunded").filter(e => e.payload.orderId === order.id)).to.have.length(2);
		});

		it("original payment not found: 404; not captured yet: 409; a customer: 403; without a reason: 422", async () => {
			const adminToken = tokenFor({ id: randomUUID(), role: "admin" });
			expect((await http.post(`/api/orders/${randomUUID()}/refund`, { reason: "x" }, adminToken)).status).to.equal(404);
			const unpaid = await created();
			const none = await http.post(`/api/orders/${unpaid.id}/refund`, { reason: "x" }, adminToken);
			expect(none.status).to.equal(404);
			const { order } = await paidOrder();
			const notCaptured = await http.post(`/api/orders/${order.id}/refund`, { reason: "x" }, adminToken);
			expect(notCaptured.status).to.equal(409);
			expect((await http.post(`/api/orders/${order.id}/refund`, { reason: "x" }, tokenFor({ id: order.customerId, role: "customer" }))).status).to.equal(403);
			expect((await http.post(`/api/orders/${order.id}/refund`, {}, adminToken)).status).to.equal(422);
			expect((await call("orders.get", { id: order.id })).payment).to.deep.include({ status: "authorized", refunded: { amount: 0, currency: "PLN" } });
		});
	});

	describe("admin lists by status and date", () => {
		it("from ≤ createdAt < to, with status, for one customer", async () => {
			const customerId = randomUUID();
			const a = await created({ customerId });
			await new Promise(r => setTimeout(r, 20));
			const b = await created({ customerId });
			await call("orders.confirm", { orderId: b.id });
			const ids = async (params: Record<string, unknown>) => (await call("orders.list", { customerId, ...params }, admin())).rows.map((o: any) => o.id);
			expect(await ids({ from: b.createdAt })).to.deep.equal([b.id]);
			expect(await ids({ to: b.createdAt })).to.deep.equal([a.id]);
			expect(await ids({ from: a.createdAt, to: new Date(Date.parse(b.createdAt) + 1).toISOString() })).to.deep.equal([b.id, a.id]);
			expect(await ids({ from: a.createdAt, status: "pending" })).to.deep.equal([a.id]);
			const backwards = await refusal(call("orders.list", { from: b.createdAt, to: a.createdAt }, admin()));
			expect(backwards.code).to.equal(422);
			expect((await refusal(call("orders.list", { from: "yesterday" }, admin()))).code).to.equal(422);
		});
	});
});
