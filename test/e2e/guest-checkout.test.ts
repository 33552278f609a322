/**
 * A guest checks out without an account: a guest cart reached by its X-Guest-Token, the guest's
 * email, an address given inline, a shipping method, a card — the order is confirmed, its mail
 * goes to the email the guest gave, a retry with the same Idempotency-Key answers the same order,
 * and only that guest's token reads its status. What a guest cannot do is refused with a 4xx and
 * changes nothing. Every service on its own node over RabbitMQ, Postgres and Redis.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { Cluster, eventually, startCluster } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { gatewayOf } from "../support/payments";
import { ADDRESS, adminLogin, CARDS, finishedSaga, productInStock, stockOf, verifiedCustomer } from "../support/shop";

describe("guest checkout through the gateway (real RabbitMQ, Postgres, Redis)", function () {
	this.timeout(180_000);
	let cluster: Cluster;
	let http: Http;
	let admin: string;

	before(async () => {
		cluster = await startCluster([["api"], ["customers", "notifications"], ["catalog", "inventory"], ["carts"], ["orders", "payments"], ["shipping", "promotions", "addons"], ["checkout"]]);
		http = gatewayOf(cluster);
		admin = await adminLogin(http);
	});
	after(async () => cluster?.stop());

	async function guestWith(productId: string, quantity: number) {
		const guest = expectStatus(await http.post("/api/carts", {}), 201);
		const headers = { "x-guest-token": guest.guestToken as string };
		expectStatus(await http.post("/api/cart/items", { productId, quantity }, undefined, headers), 200);
		return { cartId: guest.cartId as string, headers };
	}

	it("guest cart → email → inline address → shipping → card: the order is confirmed, mailed to the guest, and a same-key retry answers it", async () => {
		const p = await productInStock(http, admin, { stock: 5, price: 4000 });
		const { headers } = await guestWith(p.id, 2);
		const email = `guest-${randomUUID().slice(0, 8)}@example.com`;

		let s = expectStatus(await http.get("/api/checkout", undefined, headers), 200);
		expect(s).to.include({ guest: true, customerId: null, contact: null });
		expect(s.missing).to.deep.equal(["contact", "address", "shippingMethod", "paymentMethod"]);

		s = expectStatus(await http.put("/api/checkout/contact", { email: email.toUpperCase(), phone: "+48 600 100 200" }, undefined, headers), 200);
		expect(s.contact).to.deep.equal({ email, phone: "+48 600 100 200" });
		expectStatus(await http.put("/api/checkout/address", { address: ADDRESS }, undefined, headers), 200);
		const methods = expectStatus(await http.get("/api/checkout/shipping-methods", undefined, headers), 200) as any[];
		expectStatus(await http.put("/api/checkout/shipping-method", { methodId: methods[0].id }, undefined, headers), 200);
		s = expectStatus(await http.put("/api/checkout/payment-method", { method: "card" }, undefined, headers), 200);
		expect(s.missing).to.deep.equal([]);

		const key = { ...headers, "idempotency-key": `guest-${randomUUID()}` };
		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, undefined, key), 202);
		const saga = await finishedSaga(http, admin, placed.checkout.sagaId);
		expect(saga.status, JSON.stringify(saga.failure)).to.equal("completed");

		// The guest follows the order with the cart's token, and a retry with the key answers the same order.
		const status = expectStatus(await http.get(`/api/checkout/status/${placed.checkout.sagaId}`, undefined, headers), 202);
		expect(status).to.include({ orderId: placed.orderId, status: "confirmed" });
		const retry = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, undefined, key), 202);
		expect(retry).to.include({ orderId: placed.orderId, status: "confirmed" });

		const order = expectStatus(await http.get(`/api/orders/${placed.orderId}`, admin), 200);
		expect(order).to.include({ status: "confirmed", customerEmail: email });
		expect(order.total.amount).to.equal(8000 + order.totals.shippingTotal);
		expect(await stockOf(http, admin, p.sku)).to.include({ onHand: 5, reserved: 2 });

		// The order's mail goes to the address the guest gave.
		const mail = await eventually(async () => {
			const log = expectStatus(await http.get(`/api/admin/notifications?to=${encodeURIComponent(email)}`, admin), 200);
			return log.rows.find((n: any) => n.template === "order_confirmed") ?? null;
		}, 20_000, "the order-confirmed email to the guest");
		expect(mail).to.include({ to: email, channel: "email" });

		// Another guest's token cannot read it; a customer cannot either.
		const stranger = await guestWith(p.id, 1);
		expect((await http.get(`/api/checkout/status/${placed.checkout.sagaId}`, undefined, stranger.headers)).status).to.equal(404);
		const c = await verifiedCustomer(http, admin);
		expect((await http.get(`/api/checkout/status/${placed.checkout.sagaId}`, c.token)).status).to.equal(404);
	});

	it("what a guest cannot do is refused with a 4xx and changes nothing", async () => {
		const p = await productInStock(http, admin, { stock: 3, price: 2500 });
		const { headers } = await guestWith(p.id, 1);

		// No token, a token of no cart: 401 / 404.
		expect((await http.get("/api/checkout")).status).to.equal(401);
		expect((await http.get("/api/checkout", undefined, { "x-guest-token": "x".repeat(40) })).status).to.equal(404);

		// A guest has no address book.
		const book = await http.put("/api/checkout/address", { addressId: randomUUID() }, undefined, headers);
		expect(book.status).to.equal(422);
		expect(book.body.data.map((f: any) => f.field)).to.deep.equal(["addressId"]);
		// A malformed email is refused.
		expect((await http.put("/api/checkout/contact", { email: "not-an-email" }, undefined, headers)).status).to.equal(422);

		let s = expectStatus(await http.get("/api/checkout", undefined, headers), 200);
		expect(s).to.include({ address: null, contact: null });

		// Everything chosen but the email: place names what is missing, and nothing is reserved.
		expectStatus(await http.put("/api/checkout/address", { address: ADDRESS }, undefined, headers), 200);
		const methods = expectStatus(await http.get("/api/checkout/shipping-methods", undefined, headers), 200) as any[];
		expectStatus(await http.put("/api/checkout/shipping-method", { methodId: methods[0].id }, undefined, headers), 200);
		expectStatus(await http.put("/api/checkout/payment-method", { method: "card" }, undefined, headers), 200);
		const noEmail = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, undefined, { ...headers, "idempotency-key": randomUUID() });
		expect(noEmail.status).to.equal(422);
		expect(noEmail.body.data.map((f: any) => f.field)).to.deep.equal(["contact"]);
		expect(await stockOf(http, admin, p.sku)).to.include({ onHand: 3, reserved: 0 });
		s = expectStatus(await http.get("/api/cart", undefined, headers), 200);
		expect(s).to.include({ locked: false });

		// A logged-in customer is mailed at the account's address: no contact to set.
		const c = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, c.token), 200);
		const own = await http.put("/api/checkout/contact", { email: "elsewhere@example.com" }, c.token);
		expect(own.status).to.equal(422);
		expect(expectStatus(await http.get("/api/checkout", c.token), 200)).to.include({ guest: false, contact: null });
	});
});
