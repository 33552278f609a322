/**
 * A cart change is applied once even when the carts replica that made it dies before it
 * answered. The gateway's call waits in carts' shared queue, acked only after the answer; a
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

const OTHERS = ["customers", "notifications", "catalog", "inventory", "orders", "payments", "shipping", "promotions", "addons", "checkout"];

describe("a cart change whose replica died after its commit is applied once (separate processes)", function () {
	this.timeout(300_000);
	const port = String(35000 + Math.floor(Math.random() * 2000));
	const http = new Http(`http://127.0.0.1:${port}`);
	const markers = fs.mkdtempSync(path.join(os.tmpdir(), "cart-redelivery-"));
	// Each point fires once in this run, in whichever replica reaches it first; the other answers.
	// Soft holds on: a second add would also hold the units twice.
	const holds = { CART_HOLD_MS: "600000" };
	const crashing = { ...holds, CRASH_AT: "action:carts.addItem:after,action:carts.removeItem:after", CRASH_MARKER_DIR: markers };
	const carts: ServiceProcess[] = [];
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

	const alive = () => carts.filter(p => p.child.exitCode === null && p.child.signalCode === null);

	before(async () => {
		// Checkout starts only once carts is there: both replicas start with the rest.
		others = spawnServices(OTHERS, holds);
		spawnCarts();
		spawnCarts();
		api = spawnServices(["api"], { PORT: port });
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-cart-redelivery-client` });
		await client.start();
		await client.waitForServices(["api", "carts", ...OTHERS], 150_000);
		await eventually(() => client.registry.getServiceList({ onlyAvailable: true }).filter((s: any) => s.name === "carts").length === 2, 60_000, "both carts replicas");
		admin = await adminLogin(http);
	});

	after(async function () {
		if (process.env.DEBUG_CART_REDELIVERY) for (const [name, p] of Object.entries({ api, others, ...Object.fromEntries(carts.map((p, i) => [`carts${i}`, p])) })) fs.writeFileSync(`/tmp/cart-redelivery-${name}.log`, p?.output.join("") ?? "");
		await client?.stop();
		await Promise.all([api?.kill(), others?.kill(), ...carts.map(p => p.kill())]);
		fs.rmSync(markers, { recursive: true, force: true });
	});

	it("an add answered by the second replica adds the quantity once, and a removal answers the cart without the line, not 404", async () => {
		const p = await productInStock(http, admin, { stock: 10 });
		const c = await verifiedCustomer(http, admin);
		// Both replicas must be reachable through the gateway before the crash can be told apart from a cold start.
		await eventually(async () => (await http.get("/api/cart", c.token)).status === 200, 30_000, "the gateway to reach carts");

		const added = expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 2 }, c.token), 200);
		expect(alive(), "one replica died at carts.addItem:after").to.have.length(1);
		expect(added.items.map((i: any) => i.quantity), JSON.stringify(added.items)).to.deep.equal([2]);
		const cart = expectStatus(await http.get("/api/cart", c.token), 200);
		expect(cart.items.map((i: any) => i.quantity)).to.deep.equal([2]);
		const held = expectStatus(await http.get(`/api/inventory/${p.sku}`, admin), 200);
		expect(held.available, JSON.stringify(held)).to.equal(8);

		await startCarts(); // two replicas again, for the removal's crash
		const removed = await http.delete(`/api/cart/items/${cart.items[0].id}`, c.token);
		expect(removed.status, JSON.stringify(removed.body)).to.equal(200);
		expect(alive(), "one more replica died at carts.removeItem:after").to.have.length(1);
		expect(removed.body.items).to.deep.equal([]);
		expect(expectStatus(await http.get("/api/cart", c.token), 200).items).to.deep.equal([]);
		expect(expectStatus(await http.get(`/api/inventory/${p.sku}`, admin), 200).available).to.equal(10);
	});
});
