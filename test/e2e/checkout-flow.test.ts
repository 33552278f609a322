/**
 * The whole checkout through the HTTP gateway, as a storefront drives it: items in the cart,
 * an address, the shop's own shipping method, express delivery, a promo code, an add-on
 * service — totals checked after each step — then the order paid by card, BLIK or PayPal,
 * shipped, delivered, cancelled and refunded. Every service on its own Moleculer node over
 * RabbitMQ, data in Postgres, sagas in Redis; the payment deadline is short (test/support/env.ts).
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { Cluster, EventRecorder, eventually, recordEvents, startCluster } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { gatewayOf, postWebhook, webhookBody } from "../support/payments";
import { ADDRESS, adminLogin, CARDS, finishedSaga, productInStock, readyCheckout, stockOf, verifiedCustomer } from "../support/shop";

const EVENTS = [
	"checkout.totals_updated", "checkout.order_created", "checkout.completed", "checkout.failed",
	"order.placed", "order.confirmed", "order.cancelled", "order.shipped", "inventory.released", "inventory.deducted",
	"payment.authorized", "payment.failed", "payment.voided", "payment.captured", "payment.refunded", "promotion.code_applied",
	"cart.item_quantity_changed"
];

/** A calendar day `days` after today (UTC), as the API takes it. */
function dayAfterToday(days: number): string {
	const d = new Date();
	d.setUTCDate(d.getUTCDate() + days);
	return d.toISOString().slice(0, 10);
}

describe("checkout flow through the gateway: session, card, BLIK, PayPal, the order's life (real RabbitMQ, Postgres, Redis)", function () {
	this.timeout(180_000);
	let cluster: Cluster;
	let http: Http;
	let admin: string;
	let events: EventRecorder;
	/** The shop's own shipping method: 15 PLN, express +20 PLN, 1–6 days, Poland only. */
	let ownMethod: { id: string };

	before(async () => {
		cluster = await startCluster([["api"], ["customers", "notifications"], ["catalog", "inventory"], ["carts"], ["orders", "payments"], ["shipping", "promotions", "addons"], ["checkout"], ["checkout"]]);
		http = gatewayOf(cluster); // the simulated bank's webhooks go to this gateway
		events = await recordEvents(cluster.brokers[0]!, EVENTS);
		admin = await adminLogin(http);
		ownMethod = expectStatus(
			await http.post("/api/admin/shipping-methods", {
				name: `Own van ${randomUUID().slice(0, 6)}`, carrier: "Shop van", price: { amount: 1500, currency: "PLN" },
				countries: ["PL"], deliveryDays: { min: 1, max: 6 }, expressFee: { amount: 2000, currency: "PLN" }
			}, admin),
			201
		);
	});
	after(async () => cluster?.stop());

	async function shopper(opts: { stock?: number; price?: number; quantity?: number } = {}) {
		const p = await productInStock(http, admin, { stock: opts.stock ?? 10, price: opts.price ?? 10000 });
		const c = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: opts.quantity ?? 2 }, c.token), 200);
		return { p, c };
	}

	async function promoCode(opts: { value?: number; usageLimit?: number } = {}) {
		const code = `SAVE${randomUUID().slice(0, 6).toUpperCase()}`;
		expectStatus(await http.post("/api/admin/promotions", { name: `Ten off ${code}`, code, kind: "percentage", value: opts.value ?? 10, ...(opts.usageLimit ? { usageLimit: opts.usageLimit } : {}) }, admin), 201);
		return code;
	}

	function totalsOf(answer: any) {
		return answer.totals;
	}

	async function order(id: string, token = admin) {
		return expectStatus(await http.get(`/api/orders/${id}`, token), 200);
	}

	it("totals are right after each step, and the card order carries the same totals and choices", async () => {
		const { p, c } = await shopper({ price: 10000, quantity: 2, stock: 5 });
		const addon = expectStatus(await http.post("/api/admin/addons", { name: `Gift box ${randomUUID().slice(0, 6)}`, description: "Wrapped with a bow", price: { amount: 500, currency: "PLN" }, productIds: [p.id] }, admin), 201);
		const code = await promoCode({ value: 10 });
		const base = { cartTotal: 20000, promotionDiscount: 0, shippingTotal: 0, servicesTotal: 0, grandTotal: 20000, currency: "PLN" };

		let s = expectStatus(await http.get("/api/checkout", c.token), 200);
		expect(totalsOf(s)).to.deep.equal(base);
		expect(s.missing).to.deep.equal(["address", "shippingMethod", "paymentMethod"]);
		const checkoutId = s.id;

		s = expectStatus(await http.put("/api/checkout/address", { address: ADDRESS }, c.token), 200);
		expect(s.address).to.include({ city: "Warszawa", postalCode: "00-950", country: "PL" });
		expect(totalsOf(s), "an address alone changes no total").to.deep.equal(base);

		const methods = expectStatus(await http.get("/api/checkout/shipping-methods", c.token), 200);
		expect(methods.map((m: any) => m.id)).to.include(ownMethod.id);
		s = expectStatus(await http.put("/api/checkout/shipping-method", { methodId: ownMethod.id }, c.token), 200);
		expect(totalsOf(s)).to.deep.equal({ ...base, shippingTotal: 1500, grandTotal: 21500 });

		const date = dayAfterToday(3);
		s = expectStatus(await http.put("/api/checkout/delivery-date", { date, express: true }, c.token), 200);
		expect(s).to.include({ deliveryDate: date, express: true });
		expect(totalsOf(s), "express adds the method's fee").to.deep.equal({ ...base, shippingTotal: 3500, grandTotal: 23500 });

		s = expectStatus(await http.post("/api/checkout/promo-code", { code: code.toLowerCase() }, c.token), 200);
		expect(totalsOf(s)).to.deep.equal({ ...base, promotionDiscount: 2000, shippingTotal: 3500, grandTotal: 21500 });

		const offered = expectStatus(await http.get("/api/checkout/addons", c.token), 200);
		expect(offered.map((a: any) => a.id)).to.include(addon.id);
		s = expectStatus(await http.put("/api/checkout/addons", { addonIds: [addon.id] }, c.token), 200);
		const finalTotals = { cartTotal: 20000, promotionDiscount: 2000, shippingTotal: 3500, servicesTotal: 500, grandTotal: 22000, currency: "PLN" };
		expect(totalsOf(s)).to.deep.equal(finalTotals);

		s = expectStatus(await http.put("/api/checkout/payment-method", { method: "card" }, c.token), 200);
		expect(s.missing).to.deep.equal([]);
		expect(totalsOf(expectStatus(await http.get("/api/checkout", c.token), 200))).to.deep.equal(finalTotals);

		// totals_updated once per change of a total: shipping, express, code, add-on (the address and the payment method changed none).
		const updates = () => events.events.filter(e => e.event_name === "checkout.totals_updated" && e.aggregate_id === checkoutId).map(e => e.payload.grandTotal);
		await eventually(() => updates().length >= 5, 10_000, "totals_updated events");
		expect(updates()).to.deep.equal([20000, 21500, 23500, 21500, 22000]);

		// Place computes the totals afresh; when nothing changed since the last choice it writes nothing
		// (the session as Postgres hands it back — jsonb reorders keys — is the same session).
		const { default: knexFactory } = await import("knex");
		const db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
		const sessionRow = () => db(`${process.env.SCHEMA_PREFIX}checkout.checkouts`).where({ id: checkoutId }).first();
		const before = await sessionRow();
		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
		const saga = await finishedSaga(http, admin, placed.checkout.sagaId);
		expect(saga.status, JSON.stringify(saga.failure)).to.equal("completed");
		const after = await sessionRow();
		await db.destroy();
		expect({ version: after.version, updatedAt: after.updated_at }).to.deep.equal({ version: before.version, updatedAt: before.updated_at });
		const o = await order(placed.orderId, c.token);
		expect(o.status).to.equal("confirmed");
		expect(o.totals).to.deep.equal(finalTotals);
		expect(o.total).to.deep.equal({ amount: 22000, currency: "PLN" });
		expect(o.shippingMethod).to.include({ id: ownMethod.id });
		expect(o.deliveryDate).to.equal(date);
		expect(o.express).to.equal(true);
		expect(o.shippingAddress).to.include({ city: "Warszawa", postalCode: "00-950" });
		expect(o.addons.map((a: any) => a.id)).to.deep.equal([addon.id]);
		expect(o.promotions.map((x: any) => x.code)).to.deep.equal([code]);
		expect(o.lines.map((l: any) => [l.productId, l.quantity])).to.deep.equal([[p.id, 2]]);
		expect(o.payment).to.include({ method: "card" });
		expect(o.payment.amount).to.deep.equal({ amount: 22000, currency: "PLN" });
		expect(await stockOf(http, admin, p.sku)).to.include({ onHand: 5, reserved: 2 });

		await events.waitFor("checkout.order_created", e => e.payload.orderId === placed.orderId);
		const completed = await events.waitFor("checkout.completed", e => e.payload.orderId === placed.orderId);
		expect(completed.payload).to.include({ checkoutId });
		const cart = expectStatus(await http.get("/api/cart", c.token), 200);
		expect(cart.items).to.have.length(0);
	});

	it("a country served by exactly one shipping method: place chooses it itself", async () => {
		const only = expectStatus(
			await http.post("/api/admin/shipping-methods", {
				name: `Brussels bike ${randomUUID().slice(0, 6)}`, carrier: "Bike", price: { amount: 700, currency: "PLN" }, countries: ["BE"], deliveryDays: { min: 1, max: 3 }
			}, admin),
			201
		);
		const { c } = await shopper({ price: 10000, quantity: 1 });
		expectStatus(await http.put("/api/checkout/address", { address: { ...ADDRESS, city: "Bruxelles", postalCode: "1000", country: "BE" } }, c.token), 200);
		const s = expectStatus(await http.put("/api/checkout/payment-method", { method: "card" }, c.token), 200);
		expect(s.missing).to.deep.equal(["shippingMethod"]);
		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
		expect((await finishedSaga(http, admin, placed.checkout.sagaId)).status).to.equal("completed");
		const o = await order(placed.orderId, c.token);
		expect(o.shippingMethod).to.include({ id: only.id });
		expect(o.totals).to.include({ shippingTotal: 700, grandTotal: 10700 });
	});

	it("the cart's own changes recompute the totals, once per event", async () => {
		const { c } = await shopper({ price: 5000, quantity: 1 });
		const s = expectStatus(await http.get("/api/checkout", c.token), 200);
		const cart = expectStatus(await http.get("/api/cart", c.token), 200);
		expectStatus(await http.patch(`/api/cart/items/${cart.items[0].id}`, { quantity: 3 }, c.token), 200);
		const update = await events.waitFor("checkout.totals_updated", e => e.aggregate_id === s.id && e.payload.cartTotal === 15000);
		expect(update.payload).to.include({ grandTotal: 15000, currency: "PLN" });
		expect(totalsOf(expectStatus(await http.get("/api/checkout", c.token), 200))).to.include({ cartTotal: 15000, grandTotal: 15000 });

		// The same event again (a redelivery) changes nothing and announces nothing.
		const changed = await events.waitFor("cart.item_quantity_changed", e => e.payload.cartId === cart.id);
		const count = () => events.events.filter(e => e.event_name === "checkout.totals_updated" && e.aggregate_id === s.id).length;
		const before = count();
		await (cluster.broker as any).sendToChannel(changed.event_name, changed);
		await eventually(() => events.events.filter(e => e.event_id === changed.event_id).length === 2, 10_000, "the redelivered event");
		await new Promise(r => setTimeout(r, 500));
		expect(count()).to.equal(before);

		expectStatus(await http.delete("/api/cart", c.token), 200);
		await events.waitFor("checkout.totals_updated", e => e.aggregate_id === s.id && e.payload.cartTotal === 0);
		expect(count()).to.equal(before + 1);
	});

	it("place is refused until the checkout is complete: 422 naming what is missing, and bad payment details", async () => {
		const { c } = await shopper();
		const missing = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token);
		expect(missing.status).to.equal(422);
		expect(missing.body.data.map((f: any) => f.field)).to.deep.equal(["address", "shippingMethod", "paymentMethod"]);

		await readyCheckout(http, c.token, { paymentMethod: "blik", methodId: ownMethod.id });
		const badCode = await http.post("/api/checkout/place", { paymentDetails: { blikCode: "12345" } }, c.token);
		expect(badCode.status).to.equal(422);
		expect(badCode.body.data.map((f: any) => f.field)).to.deep.equal(["paymentDetails.blikCode"]);

		const pastDate = await http.put("/api/checkout/delivery-date", { date: dayAfterToday(-1), express: false }, c.token);
		expect(pastDate.status).to.equal(422);
		const tooLate = await http.put("/api/checkout/delivery-date", { date: dayAfterToday(30), express: false }, c.token);
		expect(tooLate.status).to.equal(422);
		const badAddress = await http.put("/api/checkout/address", { address: { ...ADDRESS, postalCode: "00950x" } }, c.token);
		expect(badAddress.status).to.equal(422);
		expect(badAddress.body.data[0].field).to.equal("address.postalCode");
		const unknownCode = await http.post("/api/checkout/promo-code", { code: "NO-SUCH-CODE" }, c.token);
		expect(unknownCode.status).to.equal(422);
		expect(expectStatus(await http.get("/api/orders", c.token), 200).rows ?? []).to.have.length(0);
	});

	/** A customer with 2 × 100 PLN in the cart, the own method (15 PLN) and the payment method chosen: 215 PLN to pay. */
	async function readyShopper(method: "card" | "blik" | "paypal", opts: { code?: string; stock?: number } = {}) {
		const { p, c } = await shopper({ price: 10000, quantity: 2, stock: opts.stock ?? 10 });
		await readyCheckout(http, c.token, { paymentMethod: method, methodId: ownMethod.id });
		if (opts.code) expectStatus(await http.post("/api/checkout/promo-code", { code: opts.code }, c.token), 200);
		return { p, c };
	}

	async function usesOf(code: string): Promise<number> {
		const list = expectStatus(await http.get("/api/admin/promotions?pageSize=100", admin), 200);
		const rows: any[] = Array.isArray(list) ? list : list.rows;
		return rows.find(r => r.code === code).uses;
	}

	/** The browser following a redirect back to the shop: the answer, not where it leads. */
	const browse = (path: string) => fetch(http.baseUrl + path, { redirect: "manual" });

	describe("BLIK", () => {
		it("777123: the order awaits payment, the bank's webhook arrives and the order is confirmed", async () => {
			const { p, c } = await readyShopper("blik");
			const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: { blikCode: "777123" } }, c.token), 202);
			expect(placed.status).to.be.oneOf(["awaiting_payment", "confirmed"]);
			expect(placed.payment).to.include({ method: "blik" });
			const saga = await finishedSaga(http, admin, placed.checkout.sagaId);
			expect(saga.status, JSON.stringify(saga.failure)).to.equal("completed");
			const o = await order(placed.orderId, c.token);
			expect(o.status).to.equal("confirmed");
			expect(o.statusHistory.map((h: any) => h.status ?? h.to)).to.include.members(["pending", "awaiting_payment", "confirmed"]);
			expect(o.payment).to.include({ method: "blik", status: "authorized" });
			expect(o.payment.amount).to.deep.equal({ amount: 21500, currency: "PLN" });
			expect(await stockOf(http, admin, p.sku)).to.include({ reserved: 2 });
		});

		it("777000: the bank rejects — payment_failed, stock and the code's use released, the cart unlocked and intact", async () => {
			const code = await promoCode({ usageLimit: 10 });
			const { p, c } = await readyShopper("blik", { code });
			const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: { blikCode: "777000" } }, c.token), 202);
			const saga = await finishedSaga(http, admin, placed.checkout.sagaId);
			expect(saga.status).to.equal("compensated");
			expect(saga.failure).to.include({ step: "authorizePayment", type: "PAYMENT_DECLINED" });
			expect(saga.compensatedSteps).to.include.members(["authorizePayment", "reserveStock", "redeemPromotion", "createOrder", "lockCart"]);
			const o = await order(placed.orderId, c.token);
			expect(o.status).to.equal("payment_failed");
			expect(o.payment.status).to.equal("failed");
			expect(await stockOf(http, admin, p.sku)).to.include({ onHand: 10, reserved: 0 });
			expect(await usesOf(code)).to.equal(0);
			const cart = expectStatus(await http.get("/api/cart", c.token), 200);
			expect(cart.locked).to.equal(false);
			expect(cart.items.map((i: any) => i.quantity)).to.deep.equal([2]);
			const failed = await events.waitFor("checkout.failed", e => e.payload.orderId === placed.orderId);
			expect(failed.payload.reason).to.be.a("string").and.not.equal("");
		});

		it("a code the bank never answers: compensated at the deadline, nothing held; a late approval revives nothing", async () => {
			const { p, c } = await readyShopper("blik");
			const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: { blikCode: "123456" } }, c.token), 202);
			expect(placed.status).to.equal("awaiting_payment");
			expect((await order(placed.orderId, c.token)).status).to.equal("awaiting_payment");
			const saga = await finishedSaga(http, admin, placed.checkout.sagaId, 30_000);
			expect(saga.status).to.equal("compensated");
			expect(saga.failure).to.include({ step: "authorizePayment", type: "DEADLINE_PASSED" });
			const o = await order(placed.orderId, c.token);
			expect(o.status).to.equal("payment_failed");
			expect(o.payment.status).to.not.equal("authorized");
			expect(await stockOf(http, admin, p.sku)).to.include({ reserved: 0 });
			expect(expectStatus(await http.get("/api/cart", c.token), 200).locked).to.equal(false);

			// The bank's approval after the deadline: accepted by the gateway, voided, the order stays as it is.
			const late = await postWebhook(http, webhookBody(placed.payment.transactionId, "approved"));
			expect(late.status).to.equal(200);
			await new Promise(r => setTimeout(r, 1000));
			const after = await order(placed.orderId, c.token);
			expect(after.status).to.equal("payment_failed");
			expect(after.payment.status).to.not.equal("authorized");
			expect(await stockOf(http, admin, p.sku)).to.include({ reserved: 0 });
		});
	});

	describe("PayPal", () => {
		const urls = { returnUrl: "https://shop.example/paypal/back", cancelUrl: "https://shop.example/paypal/cancelled" };

		it("place answers PayPal's redirect; the buyer's return confirms the order", async () => {
			const { c } = await readyShopper("paypal");
			const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: urls }, c.token), 202);
			expect(placed.status).to.equal("awaiting_payment");
			expect(placed.payment.redirectUrl).to.be.a("string").and.match(/^https?:\/\//);
			const token = placed.payment.transactionId;
			expect(token).to.be.a("string");
			const back = await browse(`/api/payments/paypal/return?token=${encodeURIComponent(token)}`);
			expect(back.status).to.equal(302);
			expect(back.headers.get("location")).to.match(/^https:\/\/shop\.example\/paypal\/back/);
			const saga = await finishedSaga(http, admin, placed.checkout.sagaId);
			expect(saga.status, JSON.stringify(saga.failure)).to.equal("completed");
			expect((await order(placed.orderId, c.token)).payment).to.include({ method: "paypal", status: "authorized" });
		});

		it("the buyer cancels at PayPal: payment_failed, everything released", async () => {
			const { p, c } = await readyShopper("paypal");
			const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: urls }, c.token), 202);
			const back = await browse(`/api/payments/paypal/cancel?token=${encodeURIComponent(placed.payment.transactionId)}`);
			expect(back.status).to.equal(302);
			const saga = await finishedSaga(http, admin, placed.checkout.sagaId);
			expect(saga.status).to.equal("compensated");
			expect((await order(placed.orderId, c.token)).status).to.equal("payment_failed");
			expect(await stockOf(http, admin, p.sku)).to.include({ reserved: 0 });
		});
	});

	describe("the order's life after checkout", () => {
		async function confirmedOrder() {
			const { p, c } = await readyShopper("card");
			const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
			expect((await finishedSaga(http, admin, placed.checkout.sagaId)).status).to.equal("completed");
			return { p, c, orderId: placed.orderId as string };
		}

		it("ship deducts the stock and captures the payment; deliver; cancel after shipment is refused (409)", async () => {
			const { p, c, orderId } = await confirmedOrder();
			const shipped = expectStatus(await http.post(`/api/orders/${orderId}/ship`, { trackingNumber: "TRK-1", carrier: "Shop van" }, admin), 200);
			expect(shipped.status).to.equal("shipped");
			expect(await stockOf(http, admin, p.sku)).to.include({ onHand: 8, reserved: 0 });
			const o = await order(orderId, c.token);
			expect(o.payment).to.include({ status: "captured" });
			expect(o.payment.captured).to.deep.equal({ amount: 21500, currency: "PLN" });
			const late = await http.post(`/api/orders/${orderId}/cancel`, { reason: "Changed my mind" }, c.token);
			expect(late.status).to.equal(409);
			expect(late.body.type).to.equal("INVALID_TRANSITION");
			expect(await stockOf(http, admin, p.sku)).to.include({ onHand: 8, reserved: 0 });
			expect(expectStatus(await http.post(`/api/orders/${orderId}/deliver`, {}, admin), 200).status).to.equal("delivered");
		});

		it("cancel before shipment: stock released, payment voided, the code's use given back, order.cancelled", async () => {
			const code = await promoCode({ usageLimit: 3 });
			const { p, c } = await readyShopper("card", { code });
			const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
			expect((await finishedSaga(http, admin, placed.checkout.sagaId)).status).to.equal("completed");
			expect(await usesOf(code)).to.equal(1);
			const cancelled = await http.post(`/api/orders/${placed.orderId}/cancel`, { reason: "Changed my mind" }, c.token);
			expect(cancelled.status, JSON.stringify(cancelled.body)).to.equal(202);
			const o = await eventually(async () => {
				const x = await order(placed.orderId, c.token);
				return x.status === "cancelled" ? x : null;
			}, 15_000, "the order cancelled");
			expect(o.payment.status).to.equal("voided");
			expect(await stockOf(http, admin, p.sku)).to.include({ onHand: 10, reserved: 0 });
			expect(await usesOf(code)).to.equal(0);
			await events.waitFor("order.cancelled", e => e.aggregate_id === placed.orderId);
			// Asked again: the same cancellation, nothing more.
			expect((await http.post(`/api/orders/${placed.orderId}/cancel`, { reason: "Changed my mind" }, c.token)).status).to.be.oneOf([202, 409]);
			expect(events.events.filter(e => e.event_name === "order.cancelled" && e.aggregate_id === placed.orderId)).to.have.length(1);
		});

		it("a partial refund after shipment; a refund beyond what was captured is refused and changes nothing", async () => {
			const { orderId } = await confirmedOrder();
			expectStatus(await http.post(`/api/orders/${orderId}/ship`, { trackingNumber: "TRK-2", carrier: "Shop van" }, admin), 200);
			const part = expectStatus(await http.post(`/api/orders/${orderId}/refund`, { amount: { amount: 5000, currency: "PLN" }, reason: "one lamp broken" }, admin), 200);
			expect(part.payment).to.deep.include({ status: "partially_refunded", refunded: { amount: 5000, currency: "PLN" } });
			const tooMuch = await http.post(`/api/orders/${orderId}/refund`, { amount: { amount: 16501, currency: "PLN" }, reason: "more than is left" }, admin);
			expect(tooMuch.status).to.equal(409);
			expect(tooMuch.body.type).to.equal("REFUND_EXCEEDS_CAPTURED");
			expect((await order(orderId)).payment.refunded).to.deep.equal({ amount: 5000, currency: "PLN" });
		});
	});

	it("a code with 5 uses left and 20 checkouts placed at once: exactly 5 discounted orders, the other 15 fail with PROMO_CODE_USED_UP", async function () {
		this.timeout(300_000);
		const code = await promoCode({ value: 10, usageLimit: 5 });
		const p = await productInStock(http, admin, { stock: 100, price: 10000 });
		const shoppers = [];
		for (let i = 0; i < 20; i++) {
			const c = await verifiedCustomer(http, admin);
			expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, c.token), 200);
			await readyCheckout(http, c.token, { paymentMethod: "card", methodId: ownMethod.id });
			const s = expectStatus(await http.post("/api/checkout/promo-code", { code }, c.token), 200);
			expect(s.totals.promotionDiscount).to.equal(1000);
			shoppers.push(c);
		}
		const answers = await Promise.all(shoppers.map(c => http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token)));
		expect(answers.map(a => a.status)).to.satisfy((s: number[]) => s.every(x => x === 202), JSON.stringify(answers.filter(a => a.status !== 202).map(a => a.body)));
		const sagas = await Promise.all(answers.map(a => finishedSaga(http, admin, a.body.checkout.sagaId, 120_000)));
		const completed = sagas.filter(s => s.status === "completed");
		const failed = sagas.filter(s => s.status === "compensated");
		expect(completed).to.have.length(5);
		expect(failed).to.have.length(15);
		for (const s of failed) expect(s.failure).to.include({ step: "redeemPromotion", type: "PROMO_CODE_USED_UP" });
		const orders = await Promise.all(completed.map(s => order(s.data.orderId)));
		for (const o of orders) {
			expect(o.status).to.equal("confirmed");
			expect(o.totals).to.include({ promotionDiscount: 1000, grandTotal: 10500 });
		}
		expect(await usesOf(code)).to.equal(5);
		expect(await stockOf(http, admin, p.sku)).to.include({ onHand: 100, reserved: 5 });
		const refused = await Promise.all(failed.map(s => order(s.data.orderId)));
		expect(refused.every(o => o.status === "cancelled")).to.equal(true);
	});
});
