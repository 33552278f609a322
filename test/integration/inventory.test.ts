/**
 * inventory against the real servers: stock never negative under concurrency (two inventory
 * replicas behind RabbitMQ), reservations all-or-none, every change audited, seed 004's
 * failure conditions refused with nothing changed.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import knexFactory, { Knex } from "knex";
import { Cluster, eventually, recordEvents, startCluster } from "../support/cluster";
import { envelope } from "../../contracts/events";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };

describe("inventory (real RabbitMQ and Postgres, two inventory replicas)", function () {
	this.timeout(60_000);
	let cluster: Cluster;
	let db: Knex;
	const schema = `${process.env.SCHEMA_PREFIX}inventory`;

	before(async () => {
		cluster = await startCluster([[], ["catalog"], ["inventory"], ["inventory"]]);
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
	});
	after(async () => {
		await cluster?.stop();
		await db?.destroy();
	});

	async function product(initialStock: number, lowStockThreshold = 2) {
		const category = await cluster.call("catalog.createCategory", { name: `Inv ${randomUUID().slice(0, 8)}` }, admin);
		const p = await cluster.call("catalog.createProduct", { name: "Lamp", price: { amount: 5000, currency: "PLN" }, categoryId: category.id, initialStock, lowStockThreshold }, admin);
		await eventually(() => cluster.call("inventory.get", { sku: p.sku }).catch(() => null), 15_000, "stock row from product.created");
		return p.sku as string;
	}

	const auditCount = async (sku: string) => Number((await db.withSchema(schema).table("audit").where({ sku }).count<{ n: string }[]>("* as n"))[0]!.n);

	it("a new product's stock starts at its initial quantity, audited", async () => {
		const sku = await product(7);
		expect(await cluster.call("inventory.get", { sku })).to.include({ onHand: 7, reserved: 0, available: 7 });
		const audit = await cluster.call("inventory.audit", { sku });
		expect(audit.rows.map((r: any) => r.change)).to.deep.equal(["created"]);
	});

	it("40 concurrent reservations of one unit against stock 10 on two replicas: exactly 10 succeed", async () => {
		const sku = await product(10);
		const results = await Promise.allSettled(Array.from({ length: 40 }, () => cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity: 1 }] })));
		const ok = results.filter(r => r.status === "fulfilled");
		const refused = results.filter(r => r.status === "rejected") as PromiseRejectedResult[];
		expect(ok).to.have.length(10);
		expect(refused).to.have.length(30);
		for (const r of refused) expect(r.reason.type).to.equal("OUT_OF_STOCK");
		expect(await cluster.call("inventory.get", { sku })).to.include({ onHand: 10, reserved: 10, available: 0 });
		const rows = await db.withSchema(schema).table("audit").where({ sku });
		for (const row of rows) expect(row.reserved_after).to.be.at.most(row.on_hand_after);
	});

	it("concurrent reservations and releases never leave stock negative or over-reserved", async () => {
		const sku = await product(5);
		const orders = Array.from({ length: 20 }, () => randomUUID());
		await Promise.allSettled(orders.map(orderId => cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 1 }] })));
		await Promise.allSettled([
			...orders.map(orderId => cluster.call("inventory.release", { orderId })),
			...Array.from({ length: 20 }, () => cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity: 1 }] }))
		]);
		const stock = await cluster.call("inventory.get", { sku });
		expect(stock.onHand).to.equal(5);
		expect(stock.reserved).to.be.within(0, 5);
		const held = await db.withSchema(schema).table("reservations").where({ sku, status: "held" }).sum<{ s: string }[]>("quantity as s");
		expect(Number(held[0]!.s ?? 0)).to.equal(stock.reserved);
	});

	it("a reservation is all lines or none", async () => {
		const plenty = await product(10);
		const scarce = await product(1);
		const orderId = randomUUID();
		const err = await cluster.call("inventory.reserve", { orderId, lines: [{ sku: plenty, quantity: 3 }, { sku: scarce, quantity: 2 }] }).catch(e => e);
		expect(err.code).to.equal(409);
		expect(err.type).to.equal("OUT_OF_STOCK");
		expect(err.data).to.include({ sku: scarce, requested: 2, available: 1 });
		expect(await cluster.call("inventory.get", { sku: plenty })).to.include({ reserved: 0 });
		expect(await cluster.call("inventory.get", { sku: scarce })).to.include({ reserved: 0 });
	});

	it("the same reservation sent twice (same key, or same order) reserves once", async () => {
		const sku = await product(10);
		const orderId = randomUUID();
		const first = await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 4 }], idempotencyKey: `${orderId}:reserveStock` });
		const again = await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 4 }], idempotencyKey: `${orderId}:reserveStock` });
		const otherKey = await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 4 }] });
		expect(again).to.deep.equal(first);
		expect(otherKey.lines).to.deep.equal(first.lines);
		expect(await cluster.call("inventory.get", { sku })).to.include({ reserved: 4 });
	});

	it("releasing an order that never reserved is a no-op; a release gives the stock back once", async () => {
		const sku = await product(3);
		expect(await cluster.call("inventory.release", { orderId: randomUUID() })).to.deep.include({ lines: [] });
		const orderId = randomUUID();
		await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 2 }] });
		await cluster.call("inventory.release", { orderId, reason: "payment declined" });
		await cluster.call("inventory.release", { orderId, reason: "payment declined" });
		expect(await cluster.call("inventory.get", { sku })).to.include({ onHand: 3, reserved: 0 });
	});

	it("deducting on shipment takes the reserved units out of stock; without a reservation it is refused", async () => {
		const sku = await product(5);
		const orderId = randomUUID();
		await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 2 }] });
		await cluster.call("inventory.deduct", { orderId });
		expect(await cluster.call("inventory.get", { sku })).to.include({ onHand: 3, reserved: 0 });
		const err = await cluster.call("inventory.deduct", { orderId }).catch(e => e);
		expect(err.type).to.equal("INVALID_TRANSITION");
	});

	it("set and adjust refuse negative stock and stock below what is reserved, changing nothing", async () => {
		const sku = await product(5);
		await cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity: 3 }] });
		const audits = await auditCount(sku);
		const negative = await cluster.call("inventory.set", { sku, quantity: -1, reason: "count" }, admin).catch(e => e);
		expect(negative.code).to.equal(422);
		const belowReserved = await cluster.call("inventory.set", { sku, quantity: 2, reason: "count" }, admin).catch(e => e);
		expect(belowReserved.type).to.equal("NEGATIVE_STOCK");
		const tooMuch = await cluster.call("inventory.adjust", { sku, adjustment: -3, reason: "broken" }, admin).catch(e => e);
		expect(tooMuch.type).to.equal("NEGATIVE_STOCK");
		expect(await cluster.call("inventory.get", { sku })).to.include({ onHand: 5, reserved: 3 });
		expect(await auditCount(sku)).to.equal(audits);

		const adjusted = await cluster.call("inventory.adjust", { sku, adjustment: 4, reason: "delivery" }, admin);
		expect(adjusted).to.include({ onHand: 9, available: 6 });
		expect(await auditCount(sku)).to.equal(audits + 1);
	});

	it("an unknown SKU is 404 for get, set and adjust", async () => {
		const sku = randomUUID();
		for (const [action, params] of [["inventory.get", { sku }], ["inventory.set", { sku, quantity: 1, reason: "x" }], ["inventory.adjust", { sku, adjustment: 1, reason: "x" }]] as const) {
			const err = await cluster.call(action, params, admin).catch(e => e);
			expect(err.code, action).to.equal(404);
		}
	});

	it("stock falling to the threshold raises low_stock, to zero out_of_stock", async () => {
		const events = await recordEvents(cluster.broker, ["inventory.low_stock", "inventory.out_of_stock"]);
		const sku = await product(4, 2);
		await cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity: 2 }] });
		await events.waitFor("inventory.low_stock", e => e.aggregate_id === sku);
		await cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity: 2 }] });
		await events.waitFor("inventory.out_of_stock", e => e.aggregate_id === sku);
		expect(events.of("inventory.low_stock", sku)).to.have.length(1);
	});

	it("product.created delivered twice creates one stock row", async () => {
		const productId = randomUUID();
		const env = envelope("product.created", productId, { productId, sku: productId, name: "Dup", price: { amount: 1, currency: "PLN" }, initialStock: 6, lowStockThreshold: 1 });
		await (cluster.broker as any).sendToChannel("product.created", env);
		await (cluster.broker as any).sendToChannel("product.created", env);
		await eventually(() => cluster.call("inventory.get", { sku: productId }).catch(() => null), 10_000, "stock row");
		await new Promise(r => setTimeout(r, 500));
		expect(await cluster.call("inventory.get", { sku: productId })).to.include({ onHand: 6 });
		expect(await auditCount(productId)).to.equal(1);
	});
});
