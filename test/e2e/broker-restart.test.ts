/**
 * RabbitMQ goes away and comes back while the shop works (ARCHITECTURE's known risk: channel
 * consumers that stay silent after a connection drop). Events written during the outage wait in
 * the outbox and are delivered after it; calls and consumers resume by themselves.
 */
import { expect } from "chai";
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import knexFactory from "knex";
import { Cluster, eventually, startCluster } from "../support/cluster";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };

function rabbit(...args: string[]) {
	execFileSync("rabbitmqctl", ["-q", ...args], { stdio: "ignore", timeout: 120_000 });
}

describe("a RabbitMQ restart under work", function () {
	this.timeout(240_000);
	let cluster: Cluster;

	before(async () => {
		cluster = await startCluster([[], ["catalog"], ["inventory"]]);
	});
	after(async () => {
		rabbit("start_app"); // whatever happened, leave the broker running
		await cluster?.stop();
	});

	it("events recorded while the broker is down are delivered once it is back, and calls work again", async () => {
		const category = await cluster.call("catalog.createCategory", { name: `Restart ${randomUUID().slice(0, 8)}` }, admin);
		const before = await cluster.call("catalog.createProduct", { name: "Before", price: { amount: 100, currency: "PLN" }, categoryId: category.id, initialStock: 1 }, admin);
		await eventually(() => cluster.call("inventory.get", { sku: before.sku }).catch(() => null), 15_000, "stock before the outage");

		// While the broker is away, catalog still takes writes from its own node (a local call
		// that needs no transport): their events wait in its outbox.
		const catalog: any = cluster.brokers[1]!.getLocalService("catalog");
		rabbit("stop_app");
		const during: string[] = [];
		for (let i = 0; i < 5; i++) {
			const p: any = await catalog.actions.createProduct({ name: `During ${i}`, price: { amount: 100, currency: "PLN" }, categoryId: category.id, initialStock: 2 }, { meta: admin });
			during.push(p.sku);
		}
		const db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
		try {
			const unsent = await db.withSchema(`${process.env.SCHEMA_PREFIX}catalog`).table("outbox").whereNull("sent_at").where({ event_name: "product.created" }).count<{ n: string }[]>("* as n");
			expect(Number(unsent[0]!.n), "events wait in the outbox during the outage").to.be.at.least(5);
		} finally {
			await db.destroy();
		}
		rabbit("start_app");

		for (const sku of during) {
			const stock = await eventually(() => cluster.call("inventory.get", { sku }).catch(() => null), 90_000, `stock of ${sku} after the outage`);
			expect(stock.onHand).to.equal(2);
		}
		const after = await eventually(
			() => cluster.call("catalog.createProduct", { name: "After", price: { amount: 100, currency: "PLN" }, categoryId: category.id, initialStock: 3 }, admin).catch(() => null),
			60_000,
			"calls over the transporter to work again"
		);
		const stock = await eventually(() => cluster.call("inventory.get", { sku: after.sku }).catch(() => null), 60_000, "consumers to resume");
		expect(stock.onHand).to.equal(3);
	});
});
