/** catalog against the real servers: seed 004's category and product failure conditions. */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { Cluster, recordEvents, startCluster, EventRecorder } from "../support/cluster";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };
const customer = { user: { id: randomUUID(), role: "customer", email: "c@test.local" } };
const name = (p: string) => `${p} ${randomUUID().slice(0, 8)}`;

describe("catalog (real RabbitMQ and Postgres)", function () {
	this.timeout(60_000);
	let cluster: Cluster;
	let events: EventRecorder;

	before(async () => {
		cluster = await startCluster([[], ["catalog"], ["inventory"]]);
		events = await recordEvents(cluster.broker, ["category.created", "product.created", "product.activated"]);
	});
	after(async () => cluster?.stop());

	const count = async () => (await cluster.call("catalog.listProducts", { pageSize: 100 }, admin)).total;

	it("categories nest at most three deep, with unique names and existing parents", async () => {
		const a = await cluster.call("catalog.createCategory", { name: name("Home") });
		const b = await cluster.call("catalog.createCategory", { name: name("Kitchen"), parentId: a.id });
		const c = await cluster.call("catalog.createCategory", { name: name("Knives"), parentId: b.id });
		expect(c.depth).to.equal(3);
		const tooDeep = await cluster.call("catalog.createCategory", { name: name("Paring"), parentId: c.id }).catch(e => e);
		expect(tooDeep.type).to.equal("CATEGORY_TOO_DEEP");
		const taken = await cluster.call("catalog.createCategory", { name: a.name.toUpperCase() }).catch(e => e);
		expect(taken.type).to.equal("NAME_TAKEN");
		const orphan = await cluster.call("catalog.createCategory", { name: name("Orphan"), parentId: randomUUID() }).catch(e => e);
		expect(orphan.code).to.equal(404);
		const tree = await cluster.call("catalog.listCategories", {});
		const root = tree.find((n: any) => n.id === a.id);
		expect(root.children[0].children[0].id).to.equal(c.id);
		await new Promise(r => setTimeout(r, 300));
		expect(events.of("category.created").filter(e => [a.id, b.id, c.id].includes(e.aggregate_id))).to.have.length(3);
	});

	it("a product is created as a draft, activated, and only then shown to customers", async () => {
		const cat = await cluster.call("catalog.createCategory", { name: name("Lamps") });
		const p = await cluster.call("catalog.createProduct", { name: "Desk lamp", price: { amount: 12999, currency: "PLN" }, categoryId: cat.id, initialStock: 3 }, admin);
		expect(p).to.include({ status: "draft", sku: p.id });
		expect(p.price).to.deep.equal({ amount: 12999, currency: "PLN" });
		const hidden = await cluster.call("catalog.getProduct", { id: p.id }, customer).catch(e => e);
		expect(hidden.code).to.equal(404);
		await cluster.call("catalog.activateProduct", { id: p.id }, admin);
		const shown = await cluster.call("catalog.getProduct", { id: p.id }, customer);
		expect(shown.status).to.equal("active");
		const list = await cluster.call("catalog.listProducts", { categoryId: cat.id }, customer);
		expect(list.rows.map((r: any) => r.id)).to.deep.equal([p.id]);
		await events.waitFor("product.activated", e => e.aggregate_id === p.id);
		expect(events.of("product.created", p.id)).to.have.length(1);
	});

	it("an invalid name, an invalid price or an unknown category is refused and nothing is created", async () => {
		const cat = await cluster.call("catalog.createCategory", { name: name("Chairs") });
		const before = await count();
		const cases = [
			[{ name: "", price: { amount: 100, currency: "PLN" }, categoryId: cat.id }, 422, "name"],
			[{ name: "x".repeat(201), price: { amount: 100, currency: "PLN" }, categoryId: cat.id }, 422, "name"],
			[{ name: "Chair", price: { amount: -1, currency: "PLN" }, categoryId: cat.id }, 422, "price.amount"],
			[{ name: "Chair", price: { amount: 10.5, currency: "PLN" }, categoryId: cat.id }, 422, "price.amount"],
			[{ name: "Chair", price: { amount: 100, currency: "XXX" }, categoryId: cat.id }, 422, "price.currency"],
			[{ name: "Chair", price: { amount: 100, currency: "PLN" }, categoryId: randomUUID() }, 404, null]
		] as const;
		for (const [params, code, field] of cases) {
			const err = await cluster.call("catalog.createProduct", params, admin).catch(e => e);
			expect(err.code, JSON.stringify(params).slice(0, 60)).to.equal(code);
			if (field) expect(err.data.map((d: any) => d.field)).to.include(field);
		}
		expect(await count()).to.equal(before);
	});

	it("activating an unknown product is 404", async () => {
		const err = await cluster.call("catalog.activateProduct", { id: randomUUID() }, admin).catch(e => e);
		expect(err.code).to.equal(404);
	});
});
