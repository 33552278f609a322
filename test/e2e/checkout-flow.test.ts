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
import { gatewayOf } from "../support/payments";
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

		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
		const saga = await finishedSaga(http, admin, placed.checkout.sagaId);
		expect(saga.status, JSON.stringify(saga.failure)).to.equal("completed");
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
});
