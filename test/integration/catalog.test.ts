/**
 * catalog against the real servers (RabbitMQ, Postgres): the category tree, the product
 * lifecycle, what anonymous shoppers see, stock from product.created, and the failure
 * conditions of createCategory / createProduct refused with nothing changed.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import { Cluster, eventually, EventRecorder, recordEvents, startCluster, countCalls } from "../support/cluster";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };
const customer = { user: { id: randomUUID(), role: "customer", email: "c@test.local" } };
const anonymous = undefined;
const name = (p: string) => `${p} ${randomUUID().slice(0, 8)}`;
const price = (amount: number) => ({ amount, currency: "PLN" });

describe("catalog (real RabbitMQ and Postgres)", function () {
	this.timeout(60_000);
	let cluster: Cluster;
	let events: EventRecorder;

	before(async () => {
		cluster = await startCluster([[], ["catalog"], ["inventory"]]);
		events = await recordEvents(cluster.broker, ["category.created", "product.created", "product.activated", "product.deactivated"]);
	});
	after(async () => cluster?.stop());

	const productCount = async () => (await cluster.call("catalog.listProducts", { pageSize: 100 }, admin)).total;
	const categoryIds = async () => {
		const ids: string[] = [];
		const walk = (nodes: any[]) => nodes.forEach(n => (ids.push(n.id), walk(n.children)));
		walk(await cluster.call("catalog.listCategories", {}));
		return ids.sort();
	};

	async function newProduct(params: Record<string, unknown> = {}) {
		const categoryId = params.categoryId ?? (await cluster.call("catalog.createCategory", { name: name("Cat") }, admin)).id;
		return cluster.call("catalog.createProduct", { name: name("Lamp"), price: price(4999), ...params, categoryId }, admin);
	}

	describe("categories", () => {
		it("nest as a tree, each knowing its depth, and category.created is published for each", async () => {
			const a = await cluster.call("catalog.createCategory", { name: name("Home") }, admin);
			const b = await cluster.call("catalog.createCategory", { name: name("Kitchen"), parentId: a.id }, admin);
			const c = await cluster.call("catalog.createCategory", { name: name("Knives"), parentId: b.id }, admin);
			expect(a).to.deep.equal({ id: a.id, name: a.name, parentId: null, depth: 1 });
			expect(b).to.include({ parentId: a.id, depth: 2 });
			expect(c).to.include({ parentId: b.id, depth: 3 });
			const tree = await cluster.call("catalog.listCategories", {});
			const root = tree.find((n: any) => n.id === a.id);
			expect(root).to.include({ name: a.name, depth: 1 });
			expect(root.children.map((n: any) => n.id)).to.deep.equal([b.id]);
			expect(root.children[0].children.map((n: any) => n.id)).to.deep.equal([c.id]);
			expect(root.children[0].children[0].children).to.deep.equal([]);
			const created = await events.waitFor("category.created", e => e.aggregate_id === c.id);
			expect(created.payload).to.include({ categoryId: c.id, name: c.name, parentCategoryId: b.id, depth: 3 });
			await events.waitFor("category.created", e => e.aggregate_id === a.id);
		});

		it("a fourth level, a name taken in any case, and an unknown parent are refused, and nothing is created", async () => {
			const a = await cluster.call("catalog.createCategory", { name: name("Garden") }, admin);
			const b = await cluster.call("catalog.createCategory", { name: name("Tools"), parentId: a.id }, admin);
			const c = await cluster.call("catalog.createCategory", { name: name("Shears"), parentId: b.id }, admin);
			const before = await categoryIds();

			const tooDeep = await cluster.call("catalog.createCategory", { name: name("Pruning"), parentId: c.id }, admin).catch(e => e);
			expect(tooDeep).to.include({ code: 409, type: "CATEGORY_TOO_DEEP" });
			const taken = await cluster.call("catalog.createCategory", { name: a.name.toUpperCase() }, admin).catch(e => e);
			expect(taken).to.include({ code: 409, type: "NAME_TAKEN" });
			const takenTrimmed = await cluster.call("catalog.createCategory", { name: `  ${b.name}  ` }, admin).catch(e => e);
			expect(takenTrimmed.type).to.equal("NAME_TAKEN");
			const orphan = await cluster.call("catalog.createCategory", { name: name("Orphan"), parentId: randomUUID() }, admin).catch(e => e);
			expect(orphan).to.include({ code: 404, type: "NOT_FOUND" });
			const noName = await cluster.call("catalog.createCategory", { name: "  " }, admin).catch(e => e);
			expect(noName.code).to.equal(422);
			expect(noName.data.map((d: any) => d.field)).to.include("name");

			expect(await categoryIds()).to.deep.equal(before);
		});
	});

	describe("products", () => {
		it("a product is created as a draft with one SKU equal to its id, and product.created carries its stock settings", async () => {
			const cat = await cluster.call("catalog.createCategory", { name: name("Lamps") }, admin);
			const vendorId = randomUUID();
			const p = await cluster.call(
				"catalog.createProduct",
				{ name: "  Desk lamp  ", description: "Warm light", price: price(12999), categoryId: cat.id, vendorId, initialStock: 3, lowStockThreshold: 1 },
				admin
			);
			expect(p).to.include({ sku: p.id, name: "Desk lamp", description: "Warm light", categoryId: cat.id, vendorId, status: "draft" });
			expect(p.price).to.deep.equal({ amount: 12999, currency: "PLN" });
			expect(Number.isNaN(Date.parse(p.createdAt)), "createdAt is a time").to.equal(false);
			const event = await events.waitFor("product.created", e => e.aggregate_id === p.id);
			expect(event.payload).to.deep.include({ productId: p.id, sku: p.id, name: "Desk lamp", price: { amount: 12999, currency: "PLN" }, categoryId: cat.id, vendorId, initialStock: 3, lowStockThreshold: 1 });
			expect(event.payload).to.include({ status: "draft", createdBy: admin.user.id });
		});

		it("product.created gives the product a stock row with its initial stock, shown as available", async () => {
			const p = await newProduct({ initialStock: 4, lowStockThreshold: 2 });
			const stock = await eventually(() => cluster.call("inventory.get", { sku: p.sku }).catch(() => null), 15_000, "stock row");
			expect(stock).to.include({ sku: p.sku, productId: p.id, onHand: 4, reserved: 0, available: 4, lowStockThreshold: 2 });
			expect(await cluster.call("catalog.getProduct", { id: p.id }, admin)).to.include({ id: p.id, available: 4 });
			const withoutStock = await newProduct();
			await eventually(() => cluster.call("inventory.get", { sku: withoutStock.sku }).catch(() => null), 15_000, "stock row");
			expect(await cluster.call("catalog.getProduct", { id: withoutStock.id }, admin)).to.include({ available: 0 });
		});

		it("a draft is hidden from shoppers until activated, and hidden again when deactivated", async () => {
			const p = await newProduct({ initialStock: 2 });
			for (const meta of [anonymous, customer]) {
				const hidden = await cluster.call("catalog.getProduct", { id: p.id }, meta).catch(e => e);
				expect(hidden).to.include({ code: 404, type: "NOT_FOUND" });
			}
			expect(await cluster.call("catalog.getProduct", { id: p.id }, admin)).to.include({ status: "draft" });
			expect(await cluster.call("catalog.getProduct", { id: p.id, includeInactive: true })).to.include({ status: "draft" });

			const active = await cluster.call("catalog.activateProduct", { id: p.id }, admin);
			expect(active).to.include({ id: p.id, status: "active" });
			expect(await cluster.call("catalog.getProduct", { id: p.id }, anonymous)).to.include({ status: "active" });
			await events.waitFor("product.activated", e => e.aggregate_id === p.id);

			const inactive = await cluster.call("catalog.deactivateProduct", { id: p.id }, admin);
			expect(inactive).to.include({ id: p.id, status: "inactive" });
			expect((await cluster.call("catalog.getProduct", { id: p.id }, customer).catch(e => e)).code).to.equal(404);
			const deactivated = await events.waitFor("product.deactivated", e => e.aggregate_id === p.id);
			expect(deactivated.payload).to.include({ productId: p.id, status: "inactive", previousStatus: "active" });
		});

		it("anonymous shoppers list only active products, each with its available stock; admins list all", async () => {
			const cat = await cluster.call("catalog.createCategory", { name: name("Mugs") }, admin);
			const onSale = await newProduct({ categoryId: cat.id, initialStock: 6 });
			const draft = await newProduct({ categoryId: cat.id });
			await cluster.call("catalog.activateProduct", { id: onSale.id }, admin);
			await eventually(() => cluster.call("inventory.get", { sku: onSale.sku }).catch(() => null), 15_000, "stock row");

			const shop = await cluster.call("catalog.listProducts", { categoryId: cat.id }, anonymous);
			expect(shop).to.include({ total: 1, page: 1, pageSize: 20 });
			expect(shop.rows.map((r: any) => [r.id, r.status, r.available])).to.deep.equal([[onSale.id, "active", 6]]);
			const all = await cluster.call("catalog.listProducts", { categoryId: cat.id }, admin);
			expect(all.rows.map((r: any) => r.id).sort()).to.deep.equal([onSale.id, draft.id].sort());
		});

		it("a listing searches by name, pages, and asks inventory once per page", async () => {
			const word = randomUUID().slice(0, 8);
			const cat = await cluster.call("catalog.createCategory", { name: name("Search") }, admin);
			for (let i = 0; i < 3; i++) await newProduct({ name: `Vase ${word} ${i}`, categoryId: cat.id });
			await newProduct({ name: "Something else", categoryId: cat.id });
			const calls = countCalls(cluster.brokers[2]!, "inventory.getMany");
			try {
				const first = await cluster.call("catalog.listProducts", { q: word.toUpperCase(), page: 1, pageSize: 2 }, admin);
				expect(first).to.include({ total: 3, page: 1, pageSize: 2 });
				expect(first.rows).to.have.length(2);
				for (const row of first.rows) expect(row).to.have.property("available");
				expect(calls.count).to.equal(1);
				const second = await cluster.call("catalog.listProducts", { q: word, page: 2, pageSize: 2 }, admin);
				expect(second.rows).to.have.length(1);
				expect(calls.count).to.equal(2);
			} finally {
				calls.restore();
			}
			const tooBig = await cluster.call("catalog.listProducts", { pageSize: 101 }).catch(e => e);
			expect(tooBig.code).to.equal(422);
		});

		it("getMany answers products of any status by id, without stock", async () => {
			const draft = await newProduct();
			const active = await newProduct();
			await cluster.call("catalog.activateProduct", { id: active.id }, admin);
			const rows = await cluster.call("catalog.getMany", { ids: [draft.id, active.id, randomUUID()] });
			expect(rows.map((r: any) => r.id).sort()).to.deep.equal([draft.id, active.id].sort());
			for (const r of rows) expect(r).to.not.have.property("available");
			expect(await cluster.call("catalog.getMany", { ids: [] })).to.deep.equal([]);
			const tooMany = await cluster.call("catalog.getMany", { ids: Array.from({ length: 201 }, () => randomUUID()) }).catch(e => e);
			expect(tooMany.code).to.equal(422);
		});

		it("an invalid name, description or price, and an unknown category, are refused with the field, and nothing is created", async () => {
			const cat = await cluster.call("catalog.createCategory", { name: name("Chairs") }, admin);
			const before = await productCount();
			const ok = { name: "Chair", price: price(100), categoryId: cat.id };
			const cases: Array<[string, Record<string, unknown>, string]> = [
				["empty name", { ...ok, name: "" }, "name"],
				["blank name", { ...ok, name: "   " }, "name"],
				["name of 201 characters", { ...ok, name: "x".repeat(201) }, "name"],
				["no name", { price: price(100), categoryId: cat.id }, "name"],
				["description of 5001 characters", { ...ok, description: "d".repeat(5001) }, "description"],
				["negative price", { ...ok, price: price(-1) }, "price.amount"],
				["fractional price", { ...ok, price: price(0.5) }, "price.amount"],
				["float price", { ...ok, price: price(10.99) }, "price.amount"],
				["price as a decimal string", { ...ok, price: { amount: "12.99", currency: "PLN" } }, "price.amount"],
				["price without currency", { ...ok, price: { amount: 100 } }, "price.currency"],
				["unknown currency", { ...ok, price: { amount: 100, currency: "XXX" } }, "price.currency"],
				["price as a bare number", { ...ok, price: 100 }, "price"],
				["negative initial stock", { ...ok, initialStock: -1 }, "initialStock"],
				["fractional initial stock", { ...ok, initialStock: 1.5 }, "initialStock"],
				["negative threshold", { ...ok, lowStockThreshold: -1 }, "lowStockThreshold"],
				["category that is not an id", { ...ok, categoryId: "chairs" }, "categoryId"]
			];
			for (const [what, params, field] of cases) {
				const err = await cluster.call("catalog.createProduct", params, admin).catch(e => e);
				expect(err.code, what).to.equal(422);
				expect(err.type, what).to.equal("VALIDATION_ERROR");
				expect(err.data.map((d: any) => d.field), what).to.include(field);
			}
			const unknownCategory = randomUUID();
			const err = await cluster.call("catalog.createProduct", { ...ok, categoryId: unknownCategory }, admin).catch(e => e);
			expect(err).to.include({ code: 404, type: "NOT_FOUND" });
			expect(err.message).to.match(/category/i);
			expect(err.data).to.deep.equal({ id: unknownCategory });
			expect(await productCount()).to.equal(before);
		});

		it("a free product (price 0) is accepted", async () => {
			expect((await newProduct({ price: price(0) })).price).to.deep.equal({ amount: 0, currency: "PLN" });
		});

		it("activating, deactivating or reading an unknown product is 404", async () => {
			for (const action of ["catalog.activateProduct", "catalog.deactivateProduct", "catalog.getProduct"]) {
				const err = await cluster.call(action, { id: randomUUID() }, admin).catch(e => e);
				expect(err, action).to.include({ code: 404, type: "NOT_FOUND" });
			}
		});
	});
});

describe("catalog when inventory is slow or gone", function () {
	this.timeout(60_000);
	let cluster: Cluster;
	let slowInventory: ServiceBroker | undefined;

	before(async () => {
		cluster = await startCluster([[], ["catalog"]]);
		// A stand-in inventory node whose getMany answers only after 2.5 s.
		slowInventory = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-slow-inventory` });
		slowInventory.createService({
			name: "inventory",
			actions: { getMany: async () => (await new Promise(r => setTimeout(r, 2500)), []) }
		});
		await slowInventory.start();
		await cluster.brokers[1]!.waitForServices(["inventory"], 30_000);
	});
	after(async () => {
		await slowInventory?.stop();
		await cluster?.stop();
	});

	it("a product page answers after 2 s with 0 available when inventory does not answer, and at once when no inventory runs", async () => {
		const cat = await cluster.call("catalog.createCategory", { name: name("Slow") }, admin);
		const p = await cluster.call("catalog.createProduct", { name: "Clock", price: price(100), categoryId: cat.id, initialStock: 5 }, admin);
		let started = Date.now();
		expect(await cluster.call("catalog.getProduct", { id: p.id }, admin)).to.include({ id: p.id, available: 0 });
		expect(Date.now() - started).to.be.within(1_900, 3_900);
		started = Date.now();
		const list = await cluster.call("catalog.listProducts", { categoryId: cat.id }, admin);
		expect(list.rows.map((r: any) => r.available)).to.deep.equal([0]);
		expect(Date.now() - started).to.be.within(1_900, 3_900);

		await slowInventory!.stop();
		slowInventory = undefined;
		await eventually(() => !cluster.brokers[1]!.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === "inventory"), 15_000, "inventory to be gone");
		started = Date.now();
		expect(await cluster.call("catalog.getProduct", { id: p.id }, admin)).to.include({ available: 0 });
		expect(Date.now() - started).to.be.below(1_900);
	});
});
