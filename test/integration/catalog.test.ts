/**
 * catalog against the real servers (RabbitMQ, Postgres): vendors, the category tree, the product
 * lifecycle (create, patch, activate, deactivate, soft delete), variants, what anonymous
 * shoppers see, stock following inventory's events, and the failure conditions of
 * createCategory / createProduct / updateProduct / deleteProduct refused with nothing changed.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { Cluster, eventually, EventRecorder, recordEvents, startCluster, refusal } from "../support/cluster";

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
		events = await recordEvents(cluster.broker, ["category.created", "vendor.created", "product.created", "product.updated", "product.deleted", "product.activated", "product.deactivated"]);
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
			const takenTrimmed = await cluster.call("catalog.createCategory", { name: `  ${b.name}  `, parentId: a.id }, admin).catch(e => e);
			expect(takenTrimmed.type).to.equal("NAME_TAKEN");
			const orphan = await cluster.call("catalog.createCategory", { name: name("Orphan"), parentId: randomUUID() }, admin).catch(e => e);
			expect(orphan).to.include({ code: 404, type: "NOT_FOUND" });
			const noName = await cluster.call("catalog.createCategory", { name: "  " }, admin).catch(e => e);
			expect(noName.code).to.equal(422);
			expect(noName.data.map((d: any) => d.field)).to.include("name");

			expect(await categoryIds()).to.deep.equal(before);
		});

		it("names are unique among siblings only: the same name may live under two parents", async () => {
			const phones = await cluster.call("catalog.createCategory", { name: name("Phones") }, admin);
			const laptops = await cluster.call("catalog.createCategory", { name: name("Laptops") }, admin);
			const a = await cluster.call("catalog.createCategory", { name: "Accessories", parentId: phones.id }, admin);
			const b = await cluster.call("catalog.createCategory", { name: "accessories", parentId: laptops.id }, admin);
			expect(a.id).to.not.equal(b.id);
			const before = await categoryIds();
			expect(await refusal(cluster.call("catalog.createCategory", { name: "ACCESSORIES", parentId: phones.id }, admin))).to.include({ code: 409, type: "NAME_TAKEN" });
			// Two admins creating the same sibling at once: one wins.
			const twice = await Promise.allSettled([0, 1, 2].map(() => cluster.call("catalog.createCategory", { name: "Cases", parentId: phones.id }, admin)));
			expect(twice.filter(r => r.status === "fulfilled")).to.have.length(1);
			expect((await categoryIds()).length).to.equal(before.length + 1);
		});
	});

	describe("vendors", () => {
		it("are created, listed and read, with vendor.created; a name is taken once; bad input is 422; nothing else is stored", async () => {
			const v = await cluster.call("catalog.createVendor", { name: name("Acme"), email: " Sales@Acme.example ", phone: "+48 600 100 200" }, admin);
			expect(v).to.include({ email: "sales@acme.example", phone: "+48 600 100 200" });
			expect(await cluster.call("catalog.getVendor", { id: v.id })).to.deep.equal(v);
			const created = await events.waitFor("vendor.created", e => e.aggregate_id === v.id);
			expect(created.payload).to.include({ vendorId: v.id, name: v.name, email: "sales@acme.example" });
			const list = await cluster.call("catalog.listVendors", { pageSize: 100 });
			expect(list.rows.map((r: any) => r.id)).to.include(v.id);
			const total = list.total;
			expect(await refusal(cluster.call("catalog.createVendor", { name: v.name.toUpperCase(), email: "x@y.example" }, admin))).to.include({ code: 409, type: "NAME_TAKEN" });
			for (const [bad, field] of [[{ name: "", email: "a@b.example" }, "name"], [{ name: name("V"), email: "not-an-email" }, "email"], [{ name: name("V") }, "email"], [{ name: name("V"), email: "a@b.example", phone: "call me" }, "phone"]] as const) {
				const err = await refusal(cluster.call("catalog.createVendor", bad, admin));
				expect(err.code).to.equal(422);
				expect(err.data.map((d: any) => d.field)).to.include(field);
			}
			expect((await cluster.call("catalog.listVendors", { pageSize: 100 })).total).to.equal(total);
			expect(await refusal(cluster.call("catalog.getVendor", { id: randomUUID() }))).to.include({ code: 404 });
		});
	});

	describe("products", () => {
		it("a product is created as a draft with one SKU equal to its id, and product.created carries its stock settings", async () => {
			const cat = await cluster.call("catalog.createCategory", { name: name("Lamps") }, admin);
			const vendorId = (await cluster.call("catalog.createVendor", { name: name("Lumen"), email: "lumen@example.com" }, admin)).id;
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
			// Asking for inactive products is not a way round it: the parameter does not exist (422).
			for (const meta of [anonymous, customer]) {
				const crafted = await cluster.call("catalog.getProduct", { id: p.id, includeInactive: true }, meta).catch(e => e);
				expect(crafted.code).to.be.oneOf([404, 422]);
				expect(crafted).to.not.have.property("status", "draft");
			}

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

		it("a listing searches name and description in any case, pages, and filters by vendor", async () => {
			const word = randomUUID().slice(0, 8);
			const cat = await cluster.call("catalog.createCategory", { name: name("Search") }, admin);
			const vendor = await cluster.call("catalog.createVendor", { name: name("Vases Ltd"), email: "vases@example.com" }, admin);
			for (let i = 0; i < 2; i++) await newProduct({ name: `Vase ${word} ${i}`, categoryId: cat.id, vendorId: vendor.id });
			await newProduct({ name: "Jug", description: `like a vase ${word}`, categoryId: cat.id });
			await newProduct({ name: "Something else", categoryId: cat.id });
			const first = await cluster.call("catalog.listProducts", { q: word.toUpperCase(), page: 1, pageSize: 2 }, admin);
			expect(first).to.include({ total: 3, page: 1, pageSize: 2 });
			expect(first.rows).to.have.length(2);
			for (const row of first.rows) expect(row).to.have.property("available");
			const second = await cluster.call("catalog.listProducts", { q: word, page: 2, pageSize: 2 }, admin);
			expect(second.rows).to.have.length(1);
			const byVendor = await cluster.call("catalog.listProducts", { vendorId: vendor.id }, admin);
			expect(byVendor.rows.map((r: any) => r.vendorId)).to.deep.equal([vendor.id, vendor.id]);
			expect((await cluster.call("catalog.listProducts", { q: "%" }, admin)).rows.every((r: any) => r.name.includes("%") || r.description.includes("%"))).to.equal(true);
			const tooBig = await cluster.call("catalog.listProducts", { pageSize: 101 }).catch(e => e);
			expect(tooBig.code).to.equal(422);
		});

		it("a category's listing includes its sub-categories' products", async () => {
			const home = await cluster.call("catalog.createCategory", { name: name("Home") }, admin);
			const kitchen = await cluster.call("catalog.createCategory", { name: name("Kitchen"), parentId: home.id }, admin);
			const knives = await cluster.call("catalog.createCategory", { name: name("Knives"), parentId: kitchen.id }, admin);
			const a = await newProduct({ categoryId: home.id });
			const b = await newProduct({ categoryId: kitchen.id });
			const c = await newProduct({ categoryId: knives.id });
			const ids = async (categoryId: string) => (await cluster.call("catalog.listProducts", { categoryId }, admin)).rows.map((r: any) => r.id).sort();
			expect(await ids(home.id)).to.deep.equal([a.id, b.id, c.id].sort());
			expect(await ids(kitchen.id)).to.deep.equal([b.id, c.id].sort());
			expect(await ids(knives.id)).to.deep.equal([c.id]);
		});

		it("stock in listings follows inventory's changes", async () => {
			const p = await newProduct({ initialStock: 5 });
			await cluster.call("catalog.activateProduct", { id: p.id }, admin);
			await eventually(async () => (await cluster.call("catalog.getProduct", { id: p.id })).available === 5, 15_000, "initial stock in the catalog");
			await cluster.call("inventory.adjust", { sku: p.sku, adjustment: 3, reason: "delivery" }, admin);
			await eventually(async () => (await cluster.call("catalog.listProducts", { categoryId: p.categoryId })).rows[0].available === 8, 15_000, "8 in the listing");
			await cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku: p.sku, quantity: 6 }] });
			await eventually(async () => (await cluster.call("catalog.getProduct", { id: p.id })).available === 2, 15_000, "2 after a reservation");
		});

		it("a product may have variants, each with its own SKU, attributes and stock; a SKU belongs to one product only", async () => {
			const shirt = await newProduct({
				name: "Shirt", initialStock: 1,
				variants: [{ sku: `S-${randomUUID().slice(0, 6)}`, name: "S", attributes: { size: "S" }, initialStock: 2 }, { sku: `M-${randomUUID().slice(0, 6)}`, name: "M", attributes: { size: "M" } }]
			});
			expect(shirt.variants.map((v: any) => v.attributes.size)).to.deep.equal(["S", "M"]);
			const created = await events.waitFor("product.created", e => e.aggregate_id === shirt.id);
			expect((created.payload as any).variants.map((v: any) => [v.sku, v.initialStock])).to.deep.equal([[shirt.variants[0].sku, 2], [shirt.variants[1].sku, 1]]);
			await eventually(async () => (await cluster.call("catalog.getProduct", { id: shirt.id }, admin)).available === 3, 15_000, "the variants' stock summed");
			const read = await cluster.call("catalog.getProduct", { id: shirt.id }, admin);
			expect(read.variants.map((v: any) => v.available)).to.deep.equal([2, 1]);
			expect(await cluster.call("inventory.get", { sku: shirt.variants[1].sku })).to.include({ productId: shirt.id, variantId: shirt.variants[1].id, onHand: 1 });

			const before = await productCount();
			const taken = await refusal(newProduct({ variants: [{ sku: shirt.variants[0].sku, name: "again" }] }));
			expect(taken).to.include({ code: 409, type: "SKU_TAKEN" });
			const twice = await refusal(newProduct({ variants: [{ sku: "X1", name: "a" }, { sku: "X1", name: "b" }] }));
			expect(twice.code).to.equal(422);
			const badSku = await refusal(newProduct({ variants: [{ sku: "has space", name: "a" }] }));
			expect(badSku.code).to.equal(422);
			expect(await productCount()).to.equal(before);
		});

		it("getMany answers products of any status by id, deleted ones too, with their vendors when asked", async () => {
			const draft = await newProduct();
			const active = await newProduct();
			await cluster.call("catalog.activateProduct", { id: active.id }, admin);
			const rows = await cluster.call("catalog.getMany", { ids: [draft.id, active.id, randomUUID()] });
			expect(rows.map((r: any) => r.id).sort()).to.deep.equal([draft.id, active.id].sort());
			for (const r of rows) expect(r).to.have.property("available");
			expect(await cluster.call("catalog.getMany", { ids: [] })).to.deep.equal([]);
			const vendor = await cluster.call("catalog.createVendor", { name: name("Owl"), email: "owl@example.com" }, admin);
			const sold = await newProduct({ vendorId: vendor.id });
			await cluster.call("catalog.deleteProduct", { id: sold.id }, admin);
			const [withVendor] = await cluster.call("catalog.getMany", { ids: [sold.id], withVendors: true });
			expect(withVendor).to.include({ status: "deleted" });
			expect(withVendor.vendor).to.include({ id: vendor.id, email: "owl@example.com" });
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
				["free (price 0)", { ...ok, price: price(0) }, "price.amount"],
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
			const unknownVendor = await refusal(cluster.call("catalog.createProduct", { ...ok, vendorId: randomUUID() }, admin));
			expect(unknownVendor).to.include({ code: 404, type: "NOT_FOUND" });
			expect(unknownVendor.message).to.match(/vendor/i);
			expect(await productCount()).to.equal(before);
		});

		it("a price of 0.01 is the least accepted", async () => {
			expect((await newProduct({ price: price(1) })).price).to.deep.equal({ amount: 1, currency: "PLN" });
		});

		it("PATCH changes only the fields sent, logs each change, and product.updated names the changed fields", async () => {
			const vendor = await cluster.call("catalog.createVendor", { name: name("Patch"), email: "patch@example.com" }, admin);
			const other = await cluster.call("catalog.createCategory", { name: name("Other") }, admin);
			const p = await newProduct({ description: "old" });
			const updated = await cluster.call("catalog.updateProduct", { id: p.id, price: price(5999), description: "new", name: p.name, vendorId: vendor.id, categoryId: other.id }, admin);
			expect(updated).to.include({ description: "new", name: p.name, vendorId: vendor.id, categoryId: other.id });
			expect(updated.price).to.deep.equal(price(5999));
			const event = await events.waitFor("product.updated", e => e.aggregate_id === p.id);
			expect(Object.keys((event.payload as any).changedFields).sort()).to.deep.equal(["categoryId", "description", "price", "vendorId"]);
			expect((event.payload as any).changedFields.price).to.deep.equal({ from: price(4999), to: price(5999) });
			expect(event.payload).to.include({ productId: p.id, updatedBy: admin.user.id });
			// The same values again change nothing: no event, no log row.
			await cluster.call("catalog.updateProduct", { id: p.id, price: price(5999) }, admin);
			const log = await cluster.call("catalog.productChanges", { id: p.id }, admin);
			expect(log.rows.map((r: any) => r.change)).to.deep.equal(["updated", "created"]);
			expect(log.rows[0].changedFields.description).to.deep.equal({ from: "old", to: "new" });
			expect(log.rows[0].actor).to.equal(`admin:${admin.user.id}`);
			await new Promise(r => setTimeout(r, 300));
			expect(events.of("product.updated", p.id)).to.have.length(1);
		});

		it("PATCH of an unknown or deleted product is 404, invalid data is 422 naming the field, and nothing changes", async () => {
			const p = await newProduct();
			const before = await cluster.call("catalog.getProduct", { id: p.id }, admin);
			const cases: Array<[Record<string, unknown>, string]> = [
				[{ price: price(0) }, "price.amount"], [{ price: price(12.5) }, "price.amount"], [{ name: " " }, "name"], [{ categoryId: "x" }, "categoryId"],
				[{ sku: "NEW" }, "sku"], [{ status: "active" }, "status"], [{}, "body"]
			];
			for (const [patch, field] of cases) {
				const err = await refusal(cluster.call("catalog.updateProduct", { id: p.id, ...patch }, admin));
				expect(err.code, field).to.equal(422);
				expect(err.data.map((d: any) => d.field), field).to.include(field);
			}
			expect(await refusal(cluster.call("catalog.updateProduct", { id: p.id, categoryId: randomUUID() }, admin))).to.include({ code: 404 });
			expect(await refusal(cluster.call("catalog.updateProduct", { id: p.id, vendorId: randomUUID() }, admin))).to.include({ code: 404 });
			expect(await refusal(cluster.call("catalog.updateProduct", { id: randomUUID(), name: "x" }, admin))).to.include({ code: 404 });
			const after = await cluster.call("catalog.getProduct", { id: p.id }, admin);
			expect(after).to.deep.equal(before);
			expect((await cluster.call("catalog.productChanges", { id: p.id }, admin)).total).to.equal(1);
			await cluster.call("catalog.deleteProduct", { id: p.id }, admin);
			expect(await refusal(cluster.call("catalog.updateProduct", { id: p.id, name: "x" }, admin))).to.include({ code: 404 });
		});

		it("DELETE is soft: gone from listings and 404 for shoppers, still readable by admins, product.deleted published; twice or unknown is 404", async () => {
			const p = await newProduct({ initialStock: 3 });
			await cluster.call("catalog.activateProduct", { id: p.id }, admin);
			const deleted = await cluster.call("catalog.deleteProduct", { id: p.id }, admin);
			expect(deleted).to.include({ id: p.id, status: "deleted" });
			const event = await events.waitFor("product.deleted", e => e.aggregate_id === p.id);
			expect(event.payload).to.include({ productId: p.id, deletedBy: admin.user.id, previousStatus: "active" });
			expect(event.payload.skus).to.deep.equal([p.sku]);
			for (const meta of [anonymous, customer]) expect(await refusal(cluster.call("catalog.getProduct", { id: p.id }, meta))).to.include({ code: 404 });
			expect(await cluster.call("catalog.getProduct", { id: p.id }, admin)).to.include({ status: "deleted" });
			expect((await cluster.call("catalog.listProducts", { categoryId: p.categoryId }, admin)).total).to.equal(0);
			for (const action of ["catalog.deleteProduct", "catalog.activateProduct"]) expect(await refusal(cluster.call(action, { id: p.id }, admin)), action).to.include({ code: 404 });
			expect(await refusal(cluster.call("catalog.deleteProduct", { id: randomUUID() }, admin))).to.include({ code: 404 });
			await new Promise(r => setTimeout(r, 300));
			expect(events.of("product.deleted", p.id)).to.have.length(1);
			// Inventory keeps the stock for history, but it takes no new reservation.
			await eventually(async () => (await cluster.call("inventory.get", { sku: p.sku })).sellable === false, 15_000, "stock marked unsellable");
			expect(await cluster.call("inventory.get", { sku: p.sku })).to.include({ onHand: 3 });
			expect(await refusal(cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku: p.sku, quantity: 1 }] }))).to.include({ code: 409, type: "PRODUCT_INACTIVE" });
			expect((await cluster.call("catalog.productChanges", { id: p.id }, admin)).rows[0]).to.include({ change: "deleted" });
		});

		it("activating, deactivating or reading an unknown product is 404", async () => {
			for (const action of ["catalog.activateProduct", "catalog.deactivateProduct", "catalog.getProduct", "catalog.deleteProduct", "catalog.productChanges"]) {
				const err = await cluster.call(action, { id: randomUUID() }, admin).catch(e => e);
				expect(err, action).to.include({ code: 404, type: "NOT_FOUND" });
			}
		});
	});
});

describe("catalog when inventory is gone", function () {
	this.timeout(60_000);
	let cluster: Cluster;

	before(async () => {
		cluster = await startCluster([[], ["catalog"], ["inventory"]]);
	});
	after(async () => cluster?.stop());

	it("answers at once from its own copy of the stock, as last published", async () => {
		const cat = await cluster.call("catalog.createCategory", { name: name("Gone") }, admin);
		const p = await cluster.call("catalog.createProduct", { name: "Clock", price: price(100), categoryId: cat.id, initialStock: 5 }, admin);
		await eventually(async () => (await cluster.call("catalog.getProduct", { id: p.id }, admin)).available === 5, 15_000, "stock in the catalog");
		await cluster.brokers[2]!.stop();
		await eventually(() => !cluster.brokers[1]!.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === "inventory"), 15_000, "inventory to be gone");
		expect(await cluster.call("catalog.getProduct", { id: p.id }, admin)).to.include({ available: 5 });
		expect((await cluster.call("catalog.listProducts", { categoryId: cat.id }, admin)).rows[0]).to.include({ available: 5 });
	});
});
