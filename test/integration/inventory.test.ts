/**
 * inventory against the real servers, with TWO inventory replicas behind RabbitMQ: stock never
 * negative under concurrency, reservations all lines or none and once per order, release safe
 * as a compensation, every change audited, and the failure conditions of set / adjust / reserve / release
 * refused with nothing changed.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import knexFactory, { Knex } from "knex";
import { Cluster, eventually, EventRecorder, recordEvents, startCluster, countCalls, refusal } from "../support/cluster";
import { envelope } from "../../contracts/events";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };

describe("inventory (real RabbitMQ and Postgres, two inventory replicas)", function () {
	this.timeout(60_000);
	let cluster: Cluster;
	let db: Knex;
	let events: EventRecorder;
	const schema = `${process.env.SCHEMA_PREFIX}inventory`;

	before(async () => {
		cluster = await startCluster([["catalog"], ["inventory"], ["inventory"]]);
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
		events = await recordEvents(cluster.broker, [
			"inventory.created", "inventory.quantity_set", "inventory.adjusted", "inventory.updated", "inventory.reserved",
			"inventory.released", "inventory.deducted", "inventory.low_stock", "inventory.out_of_stock"
		]);
	});
	after(async () => {
		await cluster?.stop();
		await db?.destroy();
	});

	/** A product made through the catalog; its stock row comes from product.created. */
	async function product(initialStock: number, lowStockThreshold = 2) {
		const category = await cluster.call("catalog.createCategory", { name: `Inv ${randomUUID().slice(0, 8)}` }, admin);
		const p = await cluster.call("catalog.createProduct", { name: "Lamp", price: { amount: 5000, currency: "PLN" }, categoryId: category.id, initialStock, lowStockThreshold }, admin);
		await eventually(() => cluster.call("inventory.get", { sku: p.sku }).catch(() => null), 15_000, "stock row from product.created");
		return p.sku as string;
	}

	const stock = (sku: string) => cluster.call("inventory.get", { sku });
	const auditRows = (sku: string) => db.withSchema(schema).table("audit").where({ sku }).orderBy("id");
	const auditCount = async (sku: string) => (await auditRows(sku)).length;
	const reservations = (where: Record<string, unknown>) => db.withSchema(schema).table("reservations").where(where);
	/** No audit row anywhere for this SKU shows stock negative or over-reserved. */
	async function expectNeverOverReserved(sku: string) {
		const [bad] = await db.withSchema(schema).table("audit").where({ sku }).andWhere(q => q.whereRaw("reserved_after > on_hand_after").orWhere("reserved_after", "<", 0).orWhere("on_hand_after", "<", 0)).count<{ n: string }[]>("* as n");
		expect(Number(bad!.n), "audit rows with reserved > onHand or a negative value").to.equal(0);
	}

	describe("stock and its changes", () => {
		it("a new product's stock starts at its initial quantity and threshold, with one audit row and inventory.created", async () => {
			const sku = await product(7, 3);
			expect(await stock(sku)).to.deep.equal({ sku, productId: sku, onHand: 7, reserved: 0, available: 7, lowStockThreshold: 3, variantId: null, sellable: true });
			const audit = await cluster.call("inventory.audit", { sku });
			expect(audit.rows.map((r: any) => [r.change, r.onHandDelta, r.reservedDelta])).to.deep.equal([["created", 7, 0]]);
			const created = await events.waitFor("inventory.created", e => e.aggregate_id === sku);
			expect(created.payload).to.include({ sku, productId: sku, quantity: 7, lowStockThreshold: 3, available: 7 });
		});

		it("getMany answers the rows it finds, and an empty list for none", async () => {
			const a = await product(1);
			const b = await product(2);
			const rows = await cluster.call("inventory.getMany", { skus: [a, b, randomUUID()] });
			expect(rows.map((r: any) => [r.sku, r.available]).sort()).to.deep.equal([[a, 1], [b, 2]].sort());
			expect(await cluster.call("inventory.getMany", { skus: [] })).to.deep.equal([]);
			const tooMany = await cluster.call("inventory.getMany", { skus: Array.from({ length: 201 }, (_, i) => `s${i}`) }).catch(e => e);
			expect(tooMany.code).to.equal(422);
		});

		it("set puts on hand at an absolute quantity, audited with its reason and actor, and published", async () => {
			const sku = await product(7);
			const after = await cluster.call("inventory.set", { sku, quantity: 12, reason: "stock count" }, admin);
			expect(after).to.include({ onHand: 12, reserved: 0, available: 12 });
			const [last] = (await cluster.call("inventory.audit", { sku })).rows;
			expect(last).to.include({ change: "set", onHandDelta: 5, reservedDelta: 0, onHandAfter: 12, reason: "stock count", actor: `admin:${admin.user.id}` });
			const set = await events.waitFor("inventory.quantity_set", e => e.aggregate_id === sku);
			expect(set.payload).to.include({ sku, previousValue: 7, newValue: 12, reason: "stock count", userId: admin.user.id });
			await events.waitFor("inventory.updated", e => e.aggregate_id === sku && (e.payload as any).onHand === 12);
		});

		it("adjust adds or removes units, audited and published", async () => {
			const sku = await product(5);
			expect(await cluster.call("inventory.adjust", { sku, adjustment: 4, reason: "delivery" }, admin)).to.include({ onHand: 9, available: 9 });
			expect(await cluster.call("inventory.adjust", { sku, adjustment: -2, reason: "broken" }, admin)).to.include({ onHand: 7, available: 7 });
			const audit = await cluster.call("inventory.audit", { sku });
			expect(audit.rows.map((r: any) => [r.change, r.onHandDelta, r.reason])).to.deep.equal([["adjusted", -2, "broken"], ["adjusted", 4, "delivery"], ["created", 5, "product created"]]);
			const adjusted = await events.waitFor("inventory.adjusted", e => e.aggregate_id === sku && (e.payload as any).adjustment === -2);
			expect(adjusted.payload).to.include({ previousValue: 9, newValue: 7, reason: "broken" });
		});

		it("set and adjust refuse negative stock, stock below what is reserved, and bad input, changing nothing", async () => {
			const sku = await product(5);
			await cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity: 3 }] });
			const before = await stock(sku);
			const audits = await auditCount(sku);

			const negative = await cluster.call("inventory.set", { sku, quantity: -1, reason: "count" }, admin).catch(e => e);
			expect(negative).to.include({ code: 422, type: "VALIDATION_ERROR" });
			expect(negative.data.map((d: any) => d.field)).to.include("quantity");
			const belowReserved = await cluster.call("inventory.set", { sku, quantity: 2, reason: "count" }, admin).catch(e => e);
			expect(belowReserved).to.include({ code: 409, type: "NEGATIVE_STOCK" });
			expect(belowReserved.message).to.match(/3 units are reserved/);
			expect(belowReserved.data).to.include({ sku, onHand: 5, reserved: 3, requested: 2 });
			const belowZero = await cluster.call("inventory.adjust", { sku, adjustment: -6, reason: "broken" }, admin).catch(e => e);
			expect(belowZero).to.include({ code: 409, type: "NEGATIVE_STOCK" });
			const intoReserved = await cluster.call("inventory.adjust", { sku, adjustment: -3, reason: "broken" }, admin).catch(e => e);
			expect(intoReserved).to.include({ code: 409, type: "NEGATIVE_STOCK" });
			for (const [what, params, field] of [
				["zero adjustment", { sku, adjustment: 0, reason: "x" }, "adjustment"],
				["fractional adjustment", { sku, adjustment: 1.5, reason: "x" }, "adjustment"],
				["no reason", { sku, adjustment: 1 }, "reason"],
				["reason of 201 characters", { sku, adjustment: 1, reason: "r".repeat(201) }, "reason"]
			] as const) {
				const err = await cluster.call("inventory.adjust", params, admin).catch(e => e);
				expect(err.code, what).to.equal(422);
				expect(err.data.map((d: any) => d.field), what).to.include(field);
			}
			const fractional = await cluster.call("inventory.set", { sku, quantity: 2.5, reason: "count" }, admin).catch(e => e);
			expect(fractional.code).to.equal(422);

			expect(await stock(sku)).to.deep.equal(before);
			expect(await auditCount(sku)).to.equal(audits);
		});

		it("an unknown SKU is 404 for get, set, adjust and audit, and nothing is created", async () => {
			for (const sku of [randomUUID(), "NO-SUCH-SKU"]) {
				for (const [action, params] of [
					["inventory.get", { sku }],
					["inventory.set", { sku, quantity: 1, reason: "x" }],
					["inventory.adjust", { sku, adjustment: 1, reason: "x" }],
					["inventory.audit", { sku }]
				] as const) {
					const err = await cluster.call(action, params, admin).catch(e => e);
					expect(err, `${action} ${sku}`).to.include({ code: 404, type: "NOT_FOUND" });
				}
				expect(await db.withSchema(schema).table("stock").where({ sku })).to.deep.equal([]);
			}
		});

		it("set on a SKU that the catalog knows but inventory has no row for creates the row", async () => {
			const sku = await product(4);
			// Arrange the state "product.created not handled yet": the row is not there.
			await db.withSchema(schema).table("audit").where({ sku }).delete();
			await db.withSchema(schema).table("stock").where({ sku }).delete();
			expect((await stock(sku).catch(e => e)).code).to.equal(404);
			expect(await cluster.call("inventory.set", { sku, quantity: 9, reason: "first count" }, admin)).to.include({ sku, productId: sku, onHand: 9, reserved: 0 });
			expect((await auditRows(sku)).map(r => [r.change, r.on_hand_after])).to.deep.equal([["set", 9]]);
		});

		it("the same product.created delivered twice creates one stock row", async () => {
			const productId = randomUUID();
			const env = envelope("product.created", productId, { productId, sku: productId, name: "Dup", price: { amount: 1, currency: "PLN" }, initialStock: 6, lowStockThreshold: 1 });
			await (cluster.broker as any).sendToChannel("product.created", env);
			await (cluster.broker as any).sendToChannel("product.created", env);
			await eventually(() => stock(productId).catch(() => null), 10_000, "stock row");
			await eventually(async () => Number((await db.withSchema(schema).table("inbox").where({ event_id: env.event_id }).count<{ n: string }[]>("* as n"))[0]!.n) >= 1, 10_000, "inbox row");
			await new Promise(r => setTimeout(r, 1000)); // the second delivery, if it were to do anything, has done it by now
			expect(await stock(productId)).to.include({ onHand: 6, reserved: 0 });
			expect(await auditCount(productId)).to.equal(1);
			expect(events.of("inventory.created", productId)).to.have.length(1);
		});

		it("every change leaves one audit row, newest first, paged", async () => {
			const sku = await product(10);
			const orderA = randomUUID();
			const orderB = randomUUID();
			await cluster.call("inventory.set", { sku, quantity: 8, reason: "count" }, admin);
			await cluster.call("inventory.adjust", { sku, adjustment: 2, reason: "delivery" }, admin);
			await cluster.call("inventory.reserve", { orderId: orderA, lines: [{ sku, quantity: 3 }] });
			await cluster.call("inventory.release", { orderId: orderA, reason: "payment declined" });
			await cluster.call("inventory.reserve", { orderId: orderB, lines: [{ sku, quantity: 4 }] });
			await cluster.call("inventory.deduct", { orderId: orderB });
			const audit = await cluster.call("inventory.audit", { sku, pageSize: 100 });
			expect(audit.total).to.equal(7);
			expect(audit.rows.map((r: any) => [r.change, r.onHandDelta, r.reservedDelta, r.orderId])).to.deep.equal([
				["deducted", -4, -4, orderB],
				["reserved", 0, 4, orderB],
				["released", 0, -3, orderA],
				["reserved", 0, 3, orderA],
				["adjusted", 2, 0, null],
				["set", -2, 0, null],
				["created", 10, 0, null]
			]);
			expect(audit.rows[2].reason).to.equal("payment declined");
			for (const r of audit.rows) expect(Number.isNaN(Date.parse(r.at)), "at is a time").to.equal(false);
			const page2 = await cluster.call("inventory.audit", { sku, page: 2, pageSize: 3 });
			expect(page2).to.include({ total: 7, page: 2, pageSize: 3 });
			expect(page2.rows.map((r: any) => r.id)).to.deep.equal(audit.rows.slice(3, 6).map((r: any) => r.id));
			expect(await stock(sku)).to.include({ onHand: 6, reserved: 0, available: 6 });
		});

		it("low stock is judged on available stock: low_stock once when it falls below the threshold, again only after it rose and fell again; out_of_stock at zero", async () => {
			const sku = await product(4, 2);
			const first = randomUUID();
			await cluster.call("inventory.reserve", { orderId: first, lines: [{ sku, quantity: 2 }] }); // 2 left: at the threshold, not below
			await cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity: 1 }] }); // 1 left: below
			const low = await events.waitFor("inventory.low_stock", e => e.aggregate_id === sku);
			expect(low.payload).to.include({ sku, onHand: 4, reserved: 3, available: 1, currentStock: 1, threshold: 2 });
			await cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity: 1 }] });
			await events.waitFor("inventory.out_of_stock", e => e.aggregate_id === sku);
			await new Promise(r => setTimeout(r, 500));
			expect(events.of("inventory.low_stock", sku)).to.have.length(1);
			expect(events.of("inventory.out_of_stock", sku)).to.have.length(1);
			// Rises above the threshold (a release), falls again (a reservation): a second alert of each kind it crossed.
			await cluster.call("inventory.release", { orderId: first, reason: "cancelled" });
			await cluster.call("inventory.adjust", { sku, adjustment: 1, reason: "found one" }, admin); // available 3
			await cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity: 2 }] }); // available 1
			await eventually(() => events.of("inventory.low_stock", sku).length === 2, 15_000, "a second low_stock");
			await new Promise(r => setTimeout(r, 500));
			expect(events.of("inventory.low_stock", sku)).to.have.length(2);
			expect(events.of("inventory.out_of_stock", sku)).to.have.length(1);
			// Every change was published as inventory.updated, each with a newer version.
			const versions = events.of("inventory.updated", sku).map(e => (e.payload as any).version);
			expect(versions.length).to.be.at.least(6);
			expect([...versions].sort((a, b) => a - b)).to.deep.equal([...new Set(versions)].sort((a, b) => a - b));
		});

		it("a release names no more than the order reserved: EXCEEDS_RESERVED, nothing released; a partial release keeps the rest held", async () => {
			const sku = await product(10, 0);
			const orderId = randomUUID();
			await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 4 }] });
			const audits = await auditCount(sku);
			const tooMuch = await refusal(cluster.call("inventory.release", { orderId, lines: [{ sku, quantity: 5 }], reason: "too much" }));
			expect(tooMuch).to.include({ code: 409, type: "EXCEEDS_RESERVED" });
			expect(tooMuch.data).to.include({ sku, reserved: 4, requested: 5 });
			const otherSku = await refusal(cluster.call("inventory.release", { orderId, lines: [{ sku: "NOPE", quantity: 1 }] }));
			expect(otherSku.type).to.equal("EXCEEDS_RESERVED");
			expect(await stock(sku)).to.include({ reserved: 4, available: 6 });
			expect(await auditCount(sku)).to.equal(audits);
			await cluster.call("inventory.release", { orderId, lines: [{ sku, quantity: 1 }], reason: "one less" });
			expect(await stock(sku)).to.include({ reserved: 3, available: 7 });
			await cluster.call("inventory.release", { orderId, reason: "cancelled" });
			expect(await stock(sku)).to.include({ reserved: 0, available: 10 });
			expect((await refusal(cluster.call("inventory.release", { orderId, lines: [{ sku, quantity: 1 }] }))).type).to.equal("EXCEEDS_RESERVED");
		});

		it("the audit says who changed the stock, when, and what it was before and after", async () => {
			const sku = await product(5);
			await cluster.call("inventory.set", { sku, quantity: 9, reason: "stock take" }, admin);
			const [row] = (await cluster.call("inventory.audit", { sku }, admin)).rows;
			expect(row).to.include({ change: "set", onHandBefore: 5, onHandAfter: 9, reservedBefore: 0, reservedAfter: 0, reason: "stock take", actor: `admin:${admin.user.id}` });
			expect(Date.now() - new Date(row.at).getTime()).to.be.below(60_000);
		});

		it("a deactivated product's stock takes no new reservation until it is activated again; its stock stays", async () => {
			const category = await cluster.call("catalog.createCategory", { name: `Inv ${randomUUID().slice(0, 8)}` }, admin);
			const p = await cluster.call("catalog.createProduct", { name: "Lamp", price: { amount: 5000, currency: "PLN" }, categoryId: category.id, initialStock: 3 }, admin);
			await cluster.call("catalog.activateProduct", { id: p.id }, admin);
			await eventually(() => cluster.call("inventory.get", { sku: p.sku }).catch(() => null), 15_000, "stock row");
			await cluster.call("catalog.deactivateProduct", { id: p.id }, admin);
			await eventually(async () => (await stock(p.sku)).sellable === false, 15_000, "unsellable");
			const err = await refusal(cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku: p.sku, quantity: 1 }] }));
			expect(err).to.include({ code: 409, type: "PRODUCT_INACTIVE" });
			expect(await stock(p.sku)).to.include({ onHand: 3, reserved: 0 });
			await cluster.call("catalog.activateProduct", { id: p.id }, admin);
			await eventually(async () => (await stock(p.sku)).sellable === true, 15_000, "sellable again");
			await cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku: p.sku, quantity: 1 }] });
		});

		it("a new product with little or no stock raises no alert: nothing fell", async () => {
			const empty = await product(0, 2);
			const low = await product(1, 2);
			await events.waitFor("inventory.created", e => e.aggregate_id === low);
			await new Promise(r => setTimeout(r, 500));
			expect(events.of("inventory.out_of_stock", empty)).to.deep.equal([]);
			expect(events.of("inventory.low_stock", low)).to.deep.equal([]);
		});
	});

	describe("reservations", () => {
		it("a reservation holds every line, published as inventory.reserved", async () => {
			const a = await product(10);
			const b = await product(10);
			const orderId = randomUUID();
			const result = await cluster.call("inventory.reserve", { orderId, lines: [{ sku: a, quantity: 3 }, { sku: b, quantity: 1 }, { sku: a, quantity: 1 }] });
			expect(result.orderId).to.equal(orderId);
			expect(result.lines).to.have.deep.members([{ sku: a, quantity: 4 }, { sku: b, quantity: 1 }]);
			expect(await stock(a)).to.include({ onHand: 10, reserved: 4, available: 6 });
			expect(await stock(b)).to.include({ onHand: 10, reserved: 1, available: 9 });
			expect((await reservations({ order_id: orderId })).map(r => [r.sku, r.quantity, r.status])).to.have.deep.members([[a, 4, "held"], [b, 1, "held"]]);
			const reserved = await events.waitFor("inventory.reserved", e => e.aggregate_id === orderId);
			expect((reserved.payload as any).lines).to.have.deep.members(result.lines);
		});

		it("a reservation is all lines or none: one short line reserves nothing", async () => {
			const plenty = await product(10);
			const scarce = await product(1);
			const orderId = randomUUID();
			const audits = [await auditCount(plenty), await auditCount(scarce)];
			const err = await cluster.call("inventory.reserve", { orderId, lines: [{ sku: plenty, quantity: 3 }, { sku: scarce, quantity: 2 }] }).catch(e => e);
			expect(err).to.include({ code: 409, type: "OUT_OF_STOCK" });
			expect(err.data).to.deep.equal({ sku: scarce, requested: 2, available: 1 });
			expect(await stock(plenty)).to.include({ reserved: 0, available: 10 });
			expect(await stock(scarce)).to.include({ reserved: 0, available: 1 });
			expect(await reservations({ order_id: orderId })).to.deep.equal([]);
			expect([await auditCount(plenty), await auditCount(scarce)]).to.deep.equal(audits);
		});

		it("a line of an unknown SKU is OUT_OF_STOCK with nothing available, and bad lines are 422", async () => {
			const sku = await product(5);
			const unknown = randomUUID();
			const err = await cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity: 1 }, { sku: unknown, quantity: 1 }] }).catch(e => e);
			expect(err).to.include({ code: 409, type: "OUT_OF_STOCK" });
			expect(err.data).to.deep.equal({ sku: unknown, requested: 1, available: 0 });
			for (const [what, params] of [
				["no lines", { orderId: randomUUID(), lines: [] }],
				["quantity 0", { orderId: randomUUID(), lines: [{ sku, quantity: 0 }] }],
				["order id not a uuid", { orderId: "o-1", lines: [{ sku, quantity: 1 }] }],
				["101 lines", { orderId: randomUUID(), lines: Array.from({ length: 101 }, () => ({ sku, quantity: 1 })) }]
			] as const) {
				expect((await cluster.call("inventory.reserve", params).catch(e => e)).code, what).to.equal(422);
			}
			expect(await stock(sku)).to.include({ reserved: 0 });
		});

		it("the same reservation sent again (same key, another key, or five at once) reserves once", async () => {
			const sku = await product(10);
			const orderId = randomUUID();
			const first = await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 4 }], idempotencyKey: `${orderId}:reserveStock` });
			const again = await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 4 }], idempotencyKey: `${orderId}:reserveStock` });
			const otherKey = await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 4 }], idempotencyKey: `${orderId}:retry` });
			expect(again).to.deep.equal(first);
			expect(otherKey).to.deep.equal(first);
			expect(await stock(sku)).to.include({ reserved: 4 });

			const concurrentOrder = randomUUID();
			const results = await Promise.all(Array.from({ length: 5 }, (_, i) => cluster.call("inventory.reserve", { orderId: concurrentOrder, lines: [{ sku, quantity: 2 }], idempotencyKey: `k${i}-${concurrentOrder}` })));
			for (const r of results) expect(r).to.deep.equal({ orderId: concurrentOrder, lines: [{ sku, quantity: 2 }] });
			expect(await stock(sku)).to.include({ reserved: 6 });
			expect((await auditRows(sku)).filter(r => r.change === "reserved")).to.have.length(2);
		});

		it("a refused reservation under a key stays refused when repeated with that key", async () => {
			const sku = await product(1);
			const orderId = randomUUID();
			const idempotencyKey = `${orderId}:reserveStock`;
			const first = await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 2 }], idempotencyKey }).catch(e => e);
			expect(first.type).to.equal("OUT_OF_STOCK");
			await cluster.call("inventory.adjust", { sku, adjustment: 5, reason: "delivery" }, admin);
			const repeat = await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 2 }], idempotencyKey }).catch(e => e);
			expect(repeat).to.include({ code: 409, type: "OUT_OF_STOCK" });
			expect(await stock(sku)).to.include({ reserved: 0 });
		});

		it("releasing an order that never reserved is a no-op with no event; a release gives the stock back once", async () => {
			const sku = await product(3);
			const never = randomUUID();
			expect(await cluster.call("inventory.release", { orderId: never, idempotencyKey: `${never}:compensate` })).to.deep.equal({ orderId: never, lines: [] });
			const orderId = randomUUID();
			await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 2 }] });
			expect(await cluster.call("inventory.release", { orderId, reason: "payment declined" })).to.deep.equal({ orderId, lines: [{ sku, quantity: 2 }] });
			expect(await cluster.call("inventory.release", { orderId, reason: "payment declined" })).to.deep.equal({ orderId, lines: [] });
			expect(await stock(sku)).to.include({ onHand: 3, reserved: 0, available: 3 });
			expect((await reservations({ order_id: orderId })).map(r => r.status)).to.deep.equal(["released"]);
			const released = await events.waitFor("inventory.released", e => e.aggregate_id === orderId);
			expect(released.payload).to.deep.include({ orderId, lines: [{ sku, quantity: 2 }], reason: "payment declined" });
			await new Promise(r => setTimeout(r, 500));
			expect(events.of("inventory.released", orderId)).to.have.length(1);
			expect(events.of("inventory.released", never)).to.deep.equal([]);
		});

		it("the same order released ten times at once gives its stock back once, and another order's reservation is untouched", async () => {
			const sku = await product(5);
			const other = randomUUID();
			await cluster.call("inventory.reserve", { orderId: other, lines: [{ sku, quantity: 2 }] });
			const orderId = randomUUID();
			await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 2 }] });
			const results = await Promise.allSettled(Array.from({ length: 10 }, () => cluster.call("inventory.release", { orderId })));
			expect(results.filter(r => r.status === "rejected").map(r => (r as PromiseRejectedResult).reason.message)).to.deep.equal([]);
			expect(results.filter(r => r.status === "fulfilled" && (r.value as any).lines.length > 0)).to.have.length(1);
			expect(await stock(sku)).to.include({ onHand: 5, reserved: 2 });
			expect((await reservations({ order_id: other })).map(r => r.status)).to.deep.equal(["held"]);
		});

		it("deducting on shipment takes the reserved units out of stock; without a held reservation it is refused", async () => {
			const sku = await product(5);
			const orderId = randomUUID();
			await cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 2 }] });
			expect(await cluster.call("inventory.deduct", { orderId, idempotencyKey: `${orderId}:ship` })).to.deep.equal({ orderId, lines: [{ sku, quantity: 2 }] });
			expect(await cluster.call("inventory.deduct", { orderId, idempotencyKey: `${orderId}:ship` })).to.deep.equal({ orderId, lines: [{ sku, quantity: 2 }] });
			expect(await stock(sku)).to.include({ onHand: 3, reserved: 0, available: 3 });
			expect((await reservations({ order_id: orderId })).map(r => r.status)).to.deep.equal(["deducted"]);
			await events.waitFor("inventory.deducted", e => e.aggregate_id === orderId);

			// A cancellation racing the shipment: once deducted, a release is refused and nothing moves.
			const late = await cluster.call("inventory.release", { orderId, reason: "cancelled", idempotencyKey: `${orderId}:cancel:releaseStock` }).catch(e => e);
			expect(late).to.include({ code: 409, type: "INVALID_TRANSITION" });
			expect(await stock(sku)).to.include({ onHand: 3, reserved: 0 });
			expect((await reservations({ order_id: orderId })).map(r => r.status)).to.deep.equal(["deducted"]);
			const again = await cluster.call("inventory.deduct", { orderId }).catch(e => e);
			expect(again).to.include({ code: 409, type: "INVALID_TRANSITION" });
			const never = await cluster.call("inventory.deduct", { orderId: randomUUID() }).catch(e => e);
			expect(never.type).to.equal("INVALID_TRANSITION");
		});
	});

	describe("concurrency across the two replicas", () => {
		it("40 concurrent reservations of one unit against stock 10: exactly 10 succeed, 30 are OUT_OF_STOCK, never over-reserved", async () => {
			const sku = await product(10);
			const perNode = cluster.brokers.slice(1).map(b => countCalls(b, "inventory.reserve"));
			let results: PromiseSettledResult<any>[];
			try {
				results = await Promise.allSettled(Array.from({ length: 40 }, () => cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity: 1 }] })));
			} finally {
				perNode.forEach(c => c.restore());
			}
			// RabbitMQ spread the calls over both replicas: the row locks, not one process, kept the count.
			for (const c of perNode) expect(c.count).to.be.greaterThan(0);
			expect(perNode.reduce((n, c) => n + c.count, 0)).to.equal(40);
			const ok = results.filter(r => r.status === "fulfilled");
			const refused = results.filter(r => r.status === "rejected") as PromiseRejectedResult[];
			expect(ok).to.have.length(10);
			expect(refused).to.have.length(30);
			for (const r of refused) {
				expect(r.reason.type).to.equal("OUT_OF_STOCK");
				expect(r.reason.data).to.deep.equal({ sku, requested: 1, available: 0 });
			}
			expect(await stock(sku)).to.include({ onHand: 10, reserved: 10, available: 0 });
			expect(await reservations({ sku, status: "held" })).to.have.length(10);
			expect((await auditRows(sku)).filter(r => r.change === "reserved")).to.have.length(10);
			await expectNeverOverReserved(sku);
		});

		it("40 concurrent reservations and releases never leave stock negative or over-reserved", async () => {
			const sku = await product(5);
			const first = Array.from({ length: 20 }, () => randomUUID());
			const firstResults = await Promise.allSettled(first.map(orderId => cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 1 }] })));
			expect(firstResults.filter(r => r.status === "fulfilled")).to.have.length(5);

			const perNode = cluster.brokers.slice(1).map(b => countCalls(b, "inventory.release"));
			const second = Array.from({ length: 20 }, () => randomUUID());
			let releases: PromiseSettledResult<any>[];
			let reserves: PromiseSettledResult<any>[];
			try {
				[releases, reserves] = await Promise.all([
					Promise.allSettled(first.map(orderId => cluster.call("inventory.release", { orderId }))),
					Promise.allSettled(second.map(orderId => cluster.call("inventory.reserve", { orderId, lines: [{ sku, quantity: 1 }] })))
				]);
			} finally {
				perNode.forEach(c => c.restore());
			}
			for (const c of perNode) expect(c.count).to.be.greaterThan(0);
			expect(releases.filter(r => r.status === "rejected")).to.deep.equal([]);
			const released = releases.reduce((n, r) => n + (r as PromiseFulfilledResult<any>).value.lines.length, 0);
			expect(released).to.equal(5);
			for (const r of reserves.filter(r => r.status === "rejected") as PromiseRejectedResult[]) expect(r.reason.type).to.equal("OUT_OF_STOCK");
			const reservedNow = reserves.filter(r => r.status === "fulfilled").length;

			const after = await stock(sku);
			expect(after.onHand).to.equal(5);
			expect(after.reserved).to.equal(reservedNow);
			expect(after.reserved).to.be.within(0, 5);
			const held = await db.withSchema(schema).table("reservations").where({ sku, status: "held" }).sum<{ s: string }[]>("quantity as s");
			expect(Number(held[0]!.s ?? 0)).to.equal(after.reserved);
			await expectNeverOverReserved(sku);
		});
	});
});
