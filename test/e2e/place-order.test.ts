/**
 * The place-order saga end to end, through the HTTP gateway, with every service on its own
 * Moleculer node talking over RabbitMQ, data in Postgres and sagas in Redis.
 */
import { expect } from "chai";
import type { AddressInfo } from "node:net";
import { Cluster, EventRecorder, eventually, recordEvents, startCluster } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { adminLogin, CARDS, finishedSaga, productInStock, readyCheckout, stockOf, verifiedCustomer } from "../support/shop";

const FLOW_EVENTS = ["order.placed", "inventory.reserved", "inventory.released", "payment.authorized", "payment.failed", "payment.voided", "order.confirmed", "order.cancelled", "checkout.completed", "checkout.failed", "cart.checked_out", "customer.registered", "product.created"];

describe("place-order saga through the gateway (real RabbitMQ, Postgres, Redis)", function () {
	this.timeout(120_000);
	let cluster: Cluster;
	let http: Http;
	let admin: string;
	let events: EventRecorder;

	before(async () => {
		cluster = await startCluster([["api"], ["customers", "notifications"], ["catalog", "inventory"], ["carts"], ["orders", "payments"], ["shipping", "promotions", "addons"], ["checkout"], ["checkout"]]);
		const api: any = cluster.brokers[0]!.getLocalService("api");
		http = new Http(`http://127.0.0.1:${(api.server.address() as AddressInfo).port}`);
		events = await recordEvents(cluster.brokers[0]!, FLOW_EVENTS);
		admin = await adminLogin(http);
	});
	after(async () => cluster?.stop());

	/** Events about one order, whatever their aggregate (a payment's events are keyed by the payment). */
	function ofOrder(name: string, orderId: string) {
		return events.events.filter(e => e.event_name === name && (e.aggregate_id === orderId || e.payload?.orderId === orderId));
	}

	async function customerWithCart(sku: string, productId: string, quantity: number) {
		const c = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId, quantity }, c.token), 200);
		await readyCheckout(http, c.token);
		return c;
	}

	it("a verified customer's card order is confirmed, the stock reserved and the cart emptied, each event once", async () => {
		const p = await productInStock(http, admin, { stock: 5, price: 12999 });
		const c = await customerWithCart(p.sku, p.id, 2);

		const placed = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token);
		expect(placed.status).to.equal(202);
		const saga = await finishedSaga(http, admin, placed.body.checkout.sagaId);
		expect(saga.status).to.equal("completed");

		const order = expectStatus(await http.get(`/api/orders/${placed.body.orderId}`, c.token), 200);
		expect(order.status).to.equal("confirmed");
		expect(order.total).to.deep.equal({ amount: 25998, currency: "PLN" });
		expect(order.orderNumber).to.be.a("string");
		expect(await stockOf(http, admin, p.sku)).to.include({ onHand: 5, reserved: 2, available: 3 });
		const cart = expectStatus(await http.get("/api/cart", c.token), 200);
		expect(cart.items).to.have.length(0);
		expect(cart.locked).to.equal(false);

		const orderId = placed.body.orderId;
		await events.waitFor("checkout.completed", e => e.payload.orderId === orderId);
		await new Promise(r => setTimeout(r, 500)); // a duplicate would arrive by now
		for (const name of ["order.placed", "inventory.reserved", "payment.authorized", "order.confirmed"]) {
			expect(ofOrder(name, orderId), name).to.have.length(1);
		}
		expect(events.events.filter(e => e.event_name === "checkout.completed" && e.payload.orderId === orderId)).to.have.length(1);
		const placedEvent = events.of("order.placed", orderId)[0]!;
		expect(placedEvent.correlation_id).to.equal(placed.headers.get("x-correlation-id"));
		// The customer is told: the confirmation email is in the delivery log.
		const mail = await eventually(async () => (await http.get(`/api/admin/notifications?to=${encodeURIComponent(c.email)}&template=order_confirmed`, admin)).body.rows?.[0], 10_000, "order confirmation email");
		expect(mail.text).to.include(order.orderNumber);
	});

	it("a declined card leaves the order payment_failed, releases the stock and unlocks the cart intact", async () => {
		const p = await productInStock(http, admin, { stock: 3 });
		const c = await customerWithCart(p.sku, p.id, 1);

		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.declined }, c.token), 202);
		const saga = await finishedSaga(http, admin, placed.checkout.sagaId);
		expect(saga.status).to.equal("compensated");
		expect(saga.failure).to.include({ step: "authorizePayment", type: "PAYMENT_DECLINED" });
		expect(saga.failure.message).to.match(/declined/i);

		const order = expectStatus(await http.get(`/api/orders/${placed.orderId}`, c.token), 200);
		expect(order.status).to.equal("payment_failed");
		expect(await stockOf(http, admin, p.sku)).to.include({ onHand: 3, reserved: 0, available: 3 });
		const cart = expectStatus(await http.get("/api/cart", c.token), 200);
		expect(cart.locked).to.equal(false);
		expect(cart.items.map((i: any) => [i.productId, i.quantity])).to.deep.equal([[p.id, 1]]);
		await events.waitFor("checkout.failed", e => e.payload.orderId === placed.orderId);
		expect(ofOrder("payment.failed", placed.orderId)).to.have.length(1);
	});

	it("when the stock ran out before checkout, place is refused 409 OUT_OF_STOCK: no order, nothing reserved, no payment", async () => {
		const p = await productInStock(http, admin, { stock: 2 });
		const c = await customerWithCart(p.sku, p.id, 2);
		expectStatus(await http.put(`/api/inventory/${p.sku}`, { quantity: 1, reason: "damaged in the warehouse" }, admin), 200);

		const refused = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token);
		expect(refused.status).to.equal(409);
		expect(refused.body.type).to.equal("OUT_OF_STOCK");
		expect(refused.body.data.lines[0]).to.include({ sku: p.sku, requested: 2, available: 1 });
		expect(await stockOf(http, admin, p.sku)).to.include({ onHand: 1, reserved: 0 });
		expect(expectStatus(await http.get("/api/orders", c.token), 200).rows ?? []).to.have.length(0);
		const cart = expectStatus(await http.get("/api/cart", c.token), 200);
		expect(cart.locked).to.equal(false);
		// (A race lost between this check and the reservation compensates inside the saga: the next test.)
	});

	it("40 checkouts at once for a SKU with stock 10 confirm exactly 10 orders and compensate the rest", async function () {
		this.timeout(240_000);
		const p = await productInStock(http, admin, { stock: 10 });
		const customers = [];
		for (let i = 0; i < 40; i++) customers.push(await customerWithCart(p.sku, p.id, 1));

		const answers = await Promise.all(customers.map(c => http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token)));
		expect(answers.map(a => a.status)).to.satisfy((s: number[]) => s.every(x => x === 202), JSON.stringify(answers.filter(a => a.status !== 202).map(a => a.body)));
		const sagas = await Promise.all(answers.map(a => finishedSaga(http, admin, a.body.checkout.sagaId, 90_000)));

		const completed = sagas.filter(s => s.status === "completed");
		const compensated = sagas.filter(s => s.status === "compensated");
		expect(completed).to.have.length(10);
		expect(compensated).to.have.length(30);
		for (const s of compensated) expect(s.failure.type).to.equal("OUT_OF_STOCK");
		const stock = await stockOf(http, admin, p.sku);
		expect(stock).to.include({ onHand: 10, reserved: 10, available: 0 });
		const audit = expectStatus(await http.get(`/api/inventory/${p.sku}/audit?pageSize=100`, admin), 200);
		for (const row of audit.rows) {
			expect(row.onHandAfter ?? 0, "on hand never negative").to.be.at.least(0);
		}
		const confirmed = await Promise.all(completed.map(s => cluster.call("orders.get", { id: s.data.orderId })));
		expect(confirmed.every((o: any) => o.status === "confirmed")).to.equal(true);
	});

	it("every event delivered twice and every saga step sent twice changes nothing more than once", async () => {
		const p = await productInStock(http, admin, { stock: 4 });
		const c = await customerWithCart(p.sku, p.id, 1);
		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
		const saga = await finishedSaga(http, admin, placed.checkout.sagaId);
		expect(saga.status).to.equal("completed");
		await events.waitFor("checkout.completed", e => e.payload.orderId === placed.orderId);
		const before = {
			stock: await stockOf(http, admin, p.sku),
			order: expectStatus(await http.get(`/api/orders/${placed.orderId}`, c.token), 200),
			payments: await cluster.call<any[]>("payments.list", { orderId: placed.orderId }),
			notifications: expectStatus(await http.get(`/api/admin/notifications?to=${encodeURIComponent(c.email)}`, admin), 200).total
		};

		// Every step again, with the idempotency key the saga used.
		const sagaId = saga.id;
		const d = saga.data;
		const keyOf = (step: string) => `${sagaId}:${step}`;
		const relock = await cluster.call("carts.lock", { cartId: d.cartId, sagaId, idempotencyKey: keyOf("lockCart") }).catch(e => e);
		expect(relock.code ?? 200, "re-locking a checked-out cart is refused, not re-done").to.be.oneOf([200, 409]);
		const orderLines = d.lines.map(({ productId, sku, name, quantity, unitPrice }: any) => ({ productId, sku, name, quantity, unitPrice })); // as the saga sends them
		await cluster.call("orders.create", { orderId: d.orderId, customerId: d.customerId, customerEmail: d.customerEmail, cartId: d.cartId, sagaId, lines: orderLines, totals: d.totals, idempotencyKey: keyOf("createOrder") });
		await cluster.call("inventory.reserve", { orderId: d.orderId, lines: d.lines.map((l: any) => ({ sku: l.sku, quantity: l.quantity })), idempotencyKey: keyOf("reserveStock") });
		const token = (await cluster.call<any>("payments.tokenize", CARDS.ok)).paymentToken;
		await cluster.call("payments.authorize", { orderId: d.orderId, amount: d.total, paymentToken: token, idempotencyKey: keyOf("authorizePayment") });
		await cluster.call("orders.confirm", { orderId: d.orderId, paymentId: d.paymentId, idempotencyKey: keyOf("confirmOrder") });
		await cluster.call("carts.checkout", { cartId: d.cartId, sagaId, orderId: d.orderId, idempotencyKey: keyOf("checkOutCart") });

		// Every event of this checkout again, with the same event ids.
		const mine = events.events.filter(e => e.payload?.orderId === placed.orderId || e.aggregate_id === placed.orderId || e.aggregate_id === c.id);
		expect(mine.length).to.be.at.least(5);
		const seen = events.events.length;
		for (const env of mine) await (cluster.broker as any).sendToChannel(env.event_name, env);
		await eventually(() => events.events.length >= seen + mine.length, 10_000, "redelivered events to arrive");
		await new Promise(r => setTimeout(r, 1000));

		expect(await stockOf(http, admin, p.sku)).to.deep.include({ onHand: before.stock.onHand, reserved: before.stock.reserved });
		const order = expectStatus(await http.get(`/api/orders/${placed.orderId}`, c.token), 200);
		expect(order.status).to.equal("confirmed");
		expect(order.statusHistory).to.have.length(before.order.statusHistory.length);
		expect(await cluster.call<any[]>("payments.list", { orderId: placed.orderId })).to.have.length(before.payments.length);
		expect(expectStatus(await http.get(`/api/admin/notifications?to=${encodeURIComponent(c.email)}`, admin), 200).total).to.equal(before.notifications);
		const [outbox] = await Promise.all([cluster.call<any>("orders.get", { id: placed.orderId })]);
		expect(outbox.status).to.equal("confirmed");
	});

	it("an unverified customer cannot place an order and an empty cart is refused", async () => {
		const p = await productInStock(http, admin, { stock: 3 });
		const u = await verifiedCustomer(http, admin, { verify: false });
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, u.token), 200);
		const refused = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, u.token);
		expect(refused.status).to.equal(409);
		expect(refused.body.type).to.equal("EMAIL_NOT_VERIFIED");

		const v = await verifiedCustomer(http, admin);
		const empty = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, v.token);
		expect(empty.status).to.equal(409);
		expect(empty.body.type).to.equal("CART_EMPTY");
		expect(await stockOf(http, admin, p.sku)).to.include({ reserved: 0 });
	});

	it("the cart is locked while its checkout runs: changes answer 409 CART_LOCKED", async () => {
		const p = await productInStock(http, admin, { stock: 3 });
		const c = await customerWithCart(p.sku, p.id, 1);
		const cart = expectStatus(await http.get("/api/cart", c.token), 200);
		// Lock it the way the saga does, as a checkout that is still running.
		const sagaId = "7d9f4b8e-1d2c-4c1a-9f0e-2b3c4d5e6f70";
		await cluster.call("carts.lock", { cartId: cart.id, sagaId });
		const add = await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, c.token);
		expect(add.status).to.equal(409);
		expect(add.body.type).to.equal("CART_LOCKED");
		const change = await http.patch(`/api/cart/items/${cart.items[0].id}`, { quantity: 2 }, c.token);
		expect(change.body.type).to.equal("CART_LOCKED");
		const second = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token);
		expect(second.status).to.equal(409);
		expect(second.body.type).to.equal("CART_LOCKED");
		await cluster.call("carts.unlock", { cartId: cart.id, sagaId });
		expect((await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, c.token)).status).to.equal(200);
	});
});
