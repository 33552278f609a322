/**
 * RabbitMQ goes away and comes back while the shop works (a known risk: channel consumers that
 * stay silent after a connection drop). Events written during the outage wait in the outbox and
 * are delivered after it; calls and consumers resume by themselves. Runs on a private RabbitMQ
 * node (never the machine's shared one).
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import knexFactory from "knex";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import { eventually } from "../support/cluster";
import { PrivateRabbit, startPrivateRabbit } from "../support/private-rabbit";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };


describe("a RabbitMQ restart under work", function () {
	this.timeout(240_000);
	let rabbit: PrivateRabbit;
	let brokers: ServiceBroker[] = [];
	const cluster = {
		brokers,
		call: (action: string, params?: any, meta?: any) => brokers[0]!.call<any, any>(action, params, { meta })
	};

	before(async function () {
		this.timeout(120_000);
		rabbit = await startPrivateRabbit();
		const env = { ...process.env, TRANSPORTER: rabbit.url };
		brokers = [[], ["catalog"], ["inventory"]].map((services, i) => createBroker({ services, env, nodeID: `${process.env.TEST_RUN_ID}-outage-${i}` }));
		cluster.brokers = brokers;
		await Promise.all(brokers.map(b => b.start()));
		await brokers[0]!.waitForServices(["catalog", "inventory"], 30_000);
	});
	after(async function () {
		this.timeout(120_000);
		try {
			await Promise.all(brokers.map(b => b.stop().catch(() => undefined)));
		} finally {
			await rabbit?.stop();
		}
	});

	it("events recorded while the broker is down are delivered once it is back, and calls work again", async () => {
		const category = await cluster.call("catalog.createCategory", { name: `Restart ${randomUUID().slice(0, 8)}` }, admin);
		const before = await cluster.call("catalog.createProduct", { name: "Before", price: { amount: 100, currency: "PLN" }, categoryId: category.id, initialStock: 1 }, admin);
		await eventually(() => cluster.call("inventory.get", { sku: before.sku }).catch(() => null), 15_000, "stock before the outage");

		// While the broker is away, catalog still takes writes from its own node (a local call
		// that needs no transport): their events wait in its outbox.
		const catalog: any = cluster.brokers[1]!.getLocalService("catalog");
		await rabbit.stopApp();
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
		await rabbit.startApp();

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
