/**
 * A cart change (and a registration, and a stock adjustment) is applied once even when the replica
 * that made it dies before it answered. The gateway's call waits in carts' shared queue, acked only after the answer; a
 * replica killed (SIGKILL) just after its commit leaves the request to RabbitMQ, which hands
 * it to the other replica. That copy must be recognised as the same request (its message id),
 * not taken as a second one: an add would add the quantity twice, a removal answer 404 for the
 * line it removed. The client, who sent one request without an Idempotency-Key, must get one
 * answer that tells what it did.
 */
import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import { eventually } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { spawnServices, ServiceProcess } from "../support/processes";
import { adminLogin, productInStock, verifiedCustomer } from "../support/shop";

const OTHERS = ["notifications", "catalog", "orders", "payments", "shipping", "promotions", "addons", "checkout"];

describe("a storefront change whose replica died after its commit is applied once (separate processes)", function () {
	this.timeout(300_000);
	const port = String(35000 + Math.floor(Math.random() * 2000));
	const http = new Http(`http://127.0.0.1:${port}`);
	const markers = fs.mkdtempSync(path.join(os.tmpdir(), "cart-redelivery-"));
	// Each point fires once in this run, in whichever replica reaches it first; the other answers.
	// Soft holds on: a second add would also hold the units twice.
	const holds = { CART_HOLD_MS: "600000" };
	const crashing = { ...holds, CRASH_AT: "action:carts.addItem:after,action:carts.removeItem:after,action:customers.register:after,action:inventory.adjust:after", CRASH_MARKER_DIR: markers };
	const carts: ServiceProcess[] = [];
	const customers: ServiceProcess[] = [];
	const inventory: ServiceProcess[] = [];
	let api: ServiceProcess, others: ServiceProcess;
	let client: ServiceBroker;
	let admin: string;

	function spawnCarts() {
		const nodeID = `${process.env.TEST_RUN_ID}-carts-${Date.now().toString(36)}-${carts.length}`;
		carts.push(spawnServices(["carts"], { ...crashing, NODE_ID: nodeID }));
		return nodeID;
	}

	async function startCarts() {
		const nodeID = spawnCarts();
		await eventually(() => client.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === "carts" && s.nodeID === nodeID), 60_000, "the carts replica");
	}

	const running = (ps: ServiceProcess[]) => ps.filter(p => p.child.exitCode === null && p.child.signalCode === null);

	before(async () => {
		// Checkout starts only once carts is there: both replicas start with the rest.
		others = spawnServices(OTHERS, holds);
		spawnCarts();
		spawnCarts();
		for (let i = 0; i < 2; i++) customers.push(spawnServices(["customers"], { ...crashing, NODE_ID: `${process.env.TEST_RUN_ID}-customers-${Date.now().toString(36)}-${i}` }));
		for (let i = 0; i < 2; i++) inventory.push(spawnServices(["inventory"], { ...crashing, NODE_ID: `${process.env.TEST_RUN_ID}-inventory-${Date.now().toString(36)}-${i}` }));
		api = spawnServices(["api"], { PORT: port });
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-cart-redelivery-client` });
		await client.start();
		await client.waitForServices(["api", "carts", "customers", "inventory", ...OTHERS], 150_000);
		for (const name of ["carts", "customers", "inventory"]) await eventually(() => client.registry.getServiceList({ onlyAvailable: true }).filter((s: any) => s.name === name).length === 2, 60_000, `both ${name} replicas`);
		admin = await adminLogin(http);
	});

	after(async function () {
		if (process.env.DEBUG_CART_REDELIVERY) for (const [name, p] of Object.entries({ api, others, ...Object.fromEntries(carts.map((p, i) => [`carts${i}`, p])), ...Object.fromEntries(customers.map((p, i) => [`customers${i}`, p])), ...Object.fromEntries(inventory.map((p, i) => [`inventory${i}`, p])) })) fs.writeFileSync(`/tmp/cart-redelivery-${name}.log`, p?.output.join("") ?? "");
		await client?.stop();
		await Promise.all([api?.kill(), others?.kill(), ...carts.map(p => p.kill()), ...customers.map(p => p.kill()), ...inventory.map(p => p.kill())]);
		fs.rmSync(markers, { recursive: true, force: true });
	});

	it("a registration answered by the second replica answers the new account, not EMAIL_TAKEN", async () => {
		const email = `redelivered-${Date.now().toString(36)}@example.com`;
		const answer = await http.post("/api/auth/register", { email, password: "Passw0rd-long", firstName: "Ada", lastName: "Lovelace" });
		expect(running(customers), "one replica died at customers.register:after").to.have.length(1);
		expect(answer.status, JSON.stringify(answer.body)).to.equal(201);
		expect(answer.body.email).to.equal(email);
		// The address has one account, the one answered.
		const login = expectStatus(await http.post("/api/auth/login", { email, password: "Passw0rd-long" }), 200);
		expect(expectStatus(await http.get("/api/me", login.token), 200).id).to.equal(answer.body.id);
	});

	it("an add answered by the second replica adds the quantity once, and a removal answers the cart without the line, not 404", async () => {
		const p = await productInStock(http, admin, { stock: 10 });
		const c = await verifiedCustomer(http, admin);
		// Both replicas must be reachable through the gateway before the crash can be told apart from a cold start.
		await eventually(async () => (await http.get("/api/cart", c.token)).status === 200, 30_000, "the gateway to reach carts");

		const added = expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 2 }, c.token), 200);
		expect(running(carts), "one replica died at carts.addItem:after").to.have.length(1);
		expect(added.items.map((i: any) => i.quantity), JSON.stringify(added.items)).to.deep.equal([2]);
		const cart = expectStatus(await http.get("/api/cart", c.token), 200);
		expect(cart.items.map((i: any) => i.quantity)).to.deep.equal([2]);
		const held = expectStatus(await http.get(`/api/inventory/${p.sku}`, admin), 200);
		expect(held.available, JSON.stringify(held)).to.equal(8);

		await startCarts(); // two replicas again, for the removal's crash
		const removed = await http.delete(`/api/cart/items/${cart.items[0].id}`, c.token);
		expect(removed.status, JSON.stringify(removed.body)).to.equal(200);
		expect(running(carts), "one more replica died at carts.removeItem:after").to.have.length(1);
		expect(removed.body.items).to.deep.equal([]);
		expect(expectStatus(await http.get("/api/cart", c.token), 200).items).to.deep.equal([]);
		expect(expectStatus(await http.get(`/api/inventory/${p.sku}`, admin), 200).available).to.equal(10);
	});

	it("a stock adjustment answered by the second replica moves the stock once", async () => {
		const p = await productInStock(http, admin, { stock: 10 });
		const adjusted = await http.post(`/api/inventory/${p.sku}/adjustments`, { adjustment: 3, reason: "delivery" }, admin);
		expect(running(inventory), "one replica died at inventory.adjust:after").to.have.length(1);
		expect(adjusted.status, JSON.stringify(adjusted.body)).to.equal(200);
		expect(adjusted.body).to.include({ onHand: 13, available: 13 });
		expect(expectStatus(await http.get(`/api/inventory/${p.sku}`, admin), 200).onHand).to.equal(13);
		const audit = expectStatus(await http.get(`/api/inventory/${p.sku}/audit`, admin), 200);
		expect(audit.rows.map((r: any) => [r.change, r.onHandDelta])).to.deep.equal([["adjusted", 3], ["created", 10]]);
	});

	it("an admin's write sent again with its Idempotency-Key answers the first answer and changes nothing more", async () => {
		const tag = Date.now().toString(36);
		const twice = async (path: string, body: unknown) => {
			const headers = { "Idempotency-Key": `admin-${tag}-${path}` };
			const first = await http.post(path, body, admin, headers);
			const again = await http.post(path, body, admin, headers);
			expect(first.status, `${path} ${JSON.stringify(first.body)}`).to.be.oneOf([200, 201]);
			expect([again.status, again.body], `${path} sent again`).to.deep.equal([first.status, first.body]);
			return first.body;
		};
		const vendor = await twice("/api/vendors", { name: `Vendor ${tag}`, email: `vendor-${tag}@example.com` });
		const category = await twice("/api/categories", { name: `Category ${tag}` });
		const product = await twice("/api/products", { name: `Lamp ${tag}`, price: { amount: 5000, currency: "PLN" }, categoryId: category.id, vendorId: vendor.id, initialStock: 4 });
		const products = expectStatus(await http.get(`/api/products?pageSize=100&categoryId=${category.id}`, admin), 200);
		expect(products.rows.map((r: any) => r.id)).to.deep.equal([product.id]);
		await eventually(async () => (await http.get(`/api/inventory/${product.sku}`, admin)).status === 200, 15_000, "the stock row");
		expect((await twice(`/api/inventory/${product.sku}/adjustments`, { adjustment: 5, reason: "delivery" })).onHand).to.equal(9);
		expect(expectStatus(await http.get(`/api/inventory/${product.sku}`, admin), 200).onHand).to.equal(9);

		// A promotion without a code has no unique field: sent twice, it would be two discounts.
		const promotion = await twice("/api/admin/promotions", { name: `Ten off ${tag}`, kind: "fixed", value: 1000, productIds: [product.id] });
		const promotions = expectStatus(await http.get("/api/admin/promotions?pageSize=100", admin), 200);
		expect(promotions.rows.filter((r: any) => r.name === `Ten off ${tag}`).map((r: any) => r.id)).to.deep.equal([promotion.id]);
		await twice("/api/admin/shipping-methods", { name: `Courier ${tag}`, carrier: "DPD", price: { amount: 1500, currency: "PLN" }, countries: ["PL"], deliveryDays: { min: 1, max: 2 } });
		await twice("/api/admin/addons", { name: `Gift wrap ${tag}`, price: { amount: 900, currency: "PLN" }, productIds: [product.id] });
		// The key is one action's: the same key on another route is another request.
		const headers = { "Idempotency-Key": `admin-${tag}-/api/categories` };
		expectStatus(await http.post("/api/vendors", { name: `Other ${tag}`, email: `other-${tag}@example.com` }, admin, headers), 201);
	});
});
