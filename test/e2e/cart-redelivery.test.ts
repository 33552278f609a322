/**
 * A cart change (and a registration) is applied once even when the replica that made it dies
 * before it answered. The gateway's call waits in carts' shared queue, acked only after the answer; a
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

const OTHERS = ["notifications", "catalog", "inventory", "orders", "payments", "shipping", "promotions", "addons", "checkout"];

describe("a storefront change whose replica died after its commit is applied once (separate processes)", function () {
	this.timeout(300_000);
	const port = String(35000 + Math.floor(Math.random() * 2000));
	const http = new Http(`http://127.0.0.1:${port}`);
	const markers = fs.mkdtempSync(path.join(os.tmpdir(), "cart-redelivery-"));
	// Each point fires once in this run, in whichever replica reaches it first; the other answers.
	// Soft holds on: a second add would also hold the units twice.
	const holds = { CART_HOLD_MS: "600000" };
	const crashing = { ...holds, CRASH_AT: "action:carts.addItem:after,action:carts.removeItem:after,action:customers.register:after", CRASH_MARKER_DIR: markers };
	const carts: ServiceProcess[] = [];
	const customers: ServiceProcess[] = [];
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
		api = spawnServices(["api"], { PORT: port });
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-cart-redelivery-client` });
		await client.start();
		await client.waitForServices(["api", "carts", "customers", ...OTHERS], 150_000);
		for (const name of ["carts", "customers"]) await eventually(() => client.registry.getServiceList({ onlyAvailable: true }).filter((s: any) => s.name === name).length === 2, 60_000, `both ${name} replicas`);
		admin = await adminLogin(http);
	});

	after(async function () {
		if (process.env.DEBUG_CART_REDELIVERY) for (const [name, p] of Object.entries({ api, others, ...Object.fromEntries(carts.map((p, i) => [`carts${i}`, p])), ...Object.fromEntries(customers.map((p, i) => [`customers${i}`, p])) })) fs.writeFileSync(`/tmp/cart-redelivery-${name}.log`, p?.output.join("") ?? "");
		await client?.stop();
		await Promise.all([api?.kill(), others?.kill(), ...carts.map(p => p.kill()), ...customers.map(p => p.kill())]);
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
});
