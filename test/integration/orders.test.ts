/**
 * orders on a real Moleculer node over RabbitMQ, data in Postgres: the calls come from a
 * separate client node, the events are observed on their channels.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { envelope } from "../../contracts/events";
import { eventually, refusal, useShop } from "../support/cluster";

const EVENTS = ["order.placed", "order.confirmed", "order.status_changed", "order.cancelled", "order.shipped", "order.delivered"];
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
	const shop = useShop([[], ["orders"], ["payments"]], EVENTS);
	const call = shop.call;

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
			const order = await created();
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
});
