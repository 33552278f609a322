/**
 * Carts as a storefront uses them, through the HTTP gateway with every service over RabbitMQ:
 * a guest cart reached by its X-Guest-Token and merged after login (capped to stock), a price
 * change that the cart shows and the order that follows takes, a deleted product leaving carts.
 */
import { expect } from "chai";
import type { AddressInfo } from "node:net";
import { Cluster, eventually, startCluster } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { adminLogin, CARDS, finishedSaga, productInStock, readyCheckout, verifiedCustomer } from "../support/shop";

describe("carts through the gateway (real RabbitMQ, Postgres, Redis)", function () {
	this.timeout(120_000);
	let cluster: Cluster;
	let http: Http;
	let admin: string;

	before(async () => {
		cluster = await startCluster([["api"], ["customers", "notifications"], ["catalog", "inventory"], ["carts"], ["orders", "payments", "shipping", "promotions", "addons"], ["checkout"]]);
		const api: any = cluster.brokers[0]!.getLocalService("api");
		http = new Http(`http://127.0.0.1:${(api.server.address() as AddressInfo).port}`);
		admin = await adminLogin(http);
	});
	after(async () => cluster?.stop());

	it("guest cart → login → merge: the guest's lines join the customer's cart, capped to stock", async () => {
		const p = await productInStock(http, admin, { stock: 3, price: 1000 });
		const guest = expectStatus(await http.post("/api/carts", {}), 201);
		const asGuest = { "x-guest-token": guest.guestToken };
		expect((await http.get("/api/cart")).status, "no token, no login").to.equal(401);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 2 }, undefined, asGuest), 200);
		expect(expectStatus(await http.get("/api/cart", undefined, asGuest), 200)).to.include({ id: guest.cartId, itemCount: 2, guest: true });

		const c = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 2 }, c.token), 200);
		const merged = expectStatus(await http.post("/api/cart/merge", { guestToken: guest.guestToken }, c.token), 200);
		expect(merged.items.map((i: any) => [i.productId, i.quantity])).to.deep.equal([[p.id, 3]]);
		expect(merged.merged[0]).to.include({ requested: 2, quantity: 3, capped: true });
		expect((await http.get("/api/cart", undefined, asGuest)).status, "the guest cart is gone").to.equal(404);
		expect((await http.post("/api/cart/merge", { guestToken: guest.guestToken }, c.token)).status).to.equal(404);
	});

	it("a price change while the product is in the cart shows in the cart and in the order that follows", async () => {
		const p = await productInStock(http, admin, { stock: 5, price: 5000 });
		const c = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 2 }, c.token), 200);
		expectStatus(await http.patch(`/api/products/${p.id}`, { price: { amount: 4200, currency: "PLN" } }, admin), 200);
		const cart = await eventually(async () => {
			const r = expectStatus(await http.get("/api/cart", c.token), 200);
			return r.notices.length > 0 ? r : null;
		}, 15_000, "the cart's price notice");
		expect(cart.total).to.deep.equal({ amount: 8400, currency: "PLN" });
		expect(cart.notices[0]).to.include({ kind: "price_changed" });

		await readyCheckout(http, c.token);
		const placed = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token);
		expect(placed.status, JSON.stringify(placed.body)).to.equal(202);
		expect((await finishedSaga(http, admin, placed.body.checkout.sagaId)).status).to.equal("completed");
		const order = expectStatus(await http.get(`/api/orders/${placed.body.orderId}`, c.token), 200);
		expect(order.lines[0].unitPrice).to.deep.equal({ amount: 4200, currency: "PLN" });
	});

	it("a deleted product leaves every cart; the product is 404 for shoppers and the order history keeps its line", async () => {
		const p = await productInStock(http, admin, { stock: 10, price: 700 });
		const buyer = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, buyer.token), 200);
		await readyCheckout(http, buyer.token);
		const placed = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, buyer.token);
		expect((await finishedSaga(http, admin, placed.body.checkout.sagaId)).status).to.equal("completed");

		const other = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, other.token), 200);
		const guest = expectStatus(await http.post("/api/carts", {}), 201);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, undefined, { "x-guest-token": guest.guestToken }), 200);

		expectStatus(await http.delete(`/api/products/${p.id}`, admin), 200);
		for (const [token, headers] of [[other.token, undefined], [undefined, { "x-guest-token": guest.guestToken }]] as const) {
			const cart = await eventually(async () => {
				const r = expectStatus(await http.get("/api/cart", token, headers), 200);
				return r.items.length === 0 ? r : null;
			}, 15_000, "the deleted product to leave the cart");
			expect(cart.notices[0]).to.include({ kind: "item_removed", reason: "product.deleted" });
		}
		expect((await http.get(`/api/products/${p.id}`)).status).to.equal(404);
		expect((await http.get(`/api/products/${p.id}?includeInactive=true`)).status).to.be.oneOf([404, 422]);
		expect((await http.get(`/api/products/${p.id}`, admin)).body).to.include({ status: "deleted" });
		const order = expectStatus(await http.get(`/api/orders/${placed.body.orderId}`, buyer.token), 200);
		expect(order.lines[0]).to.include({ productId: p.id, quantity: 1 });
	});
});
