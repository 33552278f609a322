/** carts against the real servers: the cart's failure conditions, totals at current prices. */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { Cluster, eventually, startCluster } from "../support/cluster";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };
const customer = () => ({ user: { id: randomUUID(), role: "customer", email: "c@test.local" } });

describe("carts (real RabbitMQ and Postgres)", function () {
	this.timeout(60_000);
	let cluster: Cluster;

	before(async () => {
		cluster = await startCluster([[], ["catalog", "inventory"], ["carts"]]);
	});
	after(async () => cluster?.stop());

	async function product(stock: number, price = 2500, activate = true) {
		const cat = await cluster.call("catalog.createCategory", { name: `Carts ${randomUUID().slice(0, 8)}` });
		const p = await cluster.call("catalog.createProduct", { name: "Mug", price: { amount: price, currency: "PLN" }, categoryId: cat.id, initialStock: stock }, admin);
		if (activate) await cluster.call("catalog.activateProduct", { id: p.id }, admin);
		await eventually(() => cluster.call("inventory.get", { sku: p.sku }).catch(() => null), 15_000, "stock row");
		return p;
	}

	it("adds, changes and removes lines, with totals at the current price", async () => {
		const me = customer();
		const p = await product(10, 2500);
		let cart = await cluster.call("carts.addItem", { productId: p.id, quantity: 2 }, me);
		expect(cart.items).to.have.length(1);
		expect(cart.total).to.deep.equal({ amount: 5000, currency: "PLN" });
		cart = await cluster.call("carts.addItem", { productId: p.id, quantity: 1 }, me);
		expect(cart.items[0].quantity).to.equal(3);
		cart = await cluster.call("carts.updateItem", { itemId: cart.items[0].id, quantity: 5 }, me);
		expect(cart.total.amount).to.equal(12500);
		cart = await cluster.call("carts.updateItem", { itemId: cart.items[0].id, quantity: 0 }, me);
		expect(cart.items).to.have.length(0);
	});

	it("an add is capped to the available stock; with none left it is refused OUT_OF_STOCK", async () => {
		const me = customer();
		const p = await product(3);
		const cart = await cluster.call("carts.addItem", { productId: p.id, quantity: 5 }, me);
		expect(cart.items[0].quantity).to.equal(3);
		const none = await cluster.call("carts.addItem", { productId: p.id, quantity: 1 }, me).catch(e => e);
		expect(none.type).to.equal("OUT_OF_STOCK");
		const empty = await product(0);
		const err = await cluster.call("carts.addItem", { productId: empty.id, quantity: 1 }, customer()).catch(e => e);
		expect(err.type).to.equal("OUT_OF_STOCK");
	});

	it("an inactive product, an unknown product or an unknown variant cannot be added", async () => {
		const me = customer();
		const draft = await product(5, 100, false);
		expect((await cluster.call("carts.addItem", { productId: draft.id, quantity: 1 }, me).catch(e => e)).type).to.equal("PRODUCT_INACTIVE");
		expect((await cluster.call("carts.addItem", { productId: randomUUID(), quantity: 1 }, me).catch(e => e)).code).to.equal(404);
		const p = await product(5);
		expect((await cluster.call("carts.addItem", { productId: p.id, variantId: "blue", quantity: 1 }, me).catch(e => e)).code).to.equal(404);
		expect((await cluster.call("carts.get", {}, me)).items).to.have.length(0);
	});

	it("changing a line beyond the stock, or a line that is not in the cart, is refused and changes nothing", async () => {
		const me = customer();
		const p = await product(4);
		const cart = await cluster.call("carts.addItem", { productId: p.id, quantity: 2 }, me);
		const tooMany = await cluster.call("carts.updateItem", { itemId: cart.items[0].id, quantity: 5 }, me).catch(e => e);
		expect(tooMany.type).to.equal("OUT_OF_STOCK");
		expect((await cluster.call("carts.updateItem", { itemId: randomUUID(), quantity: 1 }, me).catch(e => e)).code).to.equal(404);
		expect((await cluster.call("carts.removeItem", { itemId: randomUUID() }, me).catch(e => e)).code).to.equal(404);
		// Another customer's line is not in this customer's cart.
		expect((await cluster.call("carts.removeItem", { itemId: cart.items[0].id }, customer()).catch(e => e)).code).to.equal(404);
		expect((await cluster.call("carts.get", {}, me)).items[0].quantity).to.equal(2);
	});

	it("quantities must be positive whole numbers", async () => {
		const me = customer();
		const p = await product(4);
		for (const quantity of [0, -1, 1.5, "two", 10_000]) {
			const err = await cluster.call("carts.addItem", { productId: p.id, quantity }, me).catch(e => e);
			expect(err.code, String(quantity)).to.equal(422);
		}
		expect((await cluster.call("carts.get", {}, me)).items).to.have.length(0);
	});

	it("a cart is locked by one checkout at a time and checked out into its order once", async () => {
		const me = customer();
		const p = await product(4);
		const cart = await cluster.call("carts.addItem", { productId: p.id, quantity: 1 }, me);
		const sagaId = randomUUID();
		const locked = await cluster.call("carts.lock", { cartId: cart.id, sagaId });
		// Lines carry their category: promotions and add-ons may be scoped to one.
		expect(locked.lines).to.deep.equal([{ productId: p.id, sku: p.sku, name: "Mug", categoryId: p.categoryId ?? null, quantity: 1, unitPrice: { amount: 2500, currency: "PLN" } }]);
		expect((await cluster.call("carts.lock", { cartId: cart.id, sagaId: randomUUID() }).catch(e => e)).type).to.equal("CART_LOCKED");
		// The checkout's total no longer the cart's: refused, not locked.
		const changed = await cluster.call("carts.lock", { cartId: cart.id, sagaId, expectedTotal: { amount: 9999, currency: "PLN" } }).catch(e => e);
		expect(changed).to.include({ code: 409, type: "CART_CHANGED" });
		const orderId = randomUUID();
		await cluster.call("carts.checkout", { cartId: cart.id, sagaId, orderId });
		await cluster.call("carts.checkout", { cartId: cart.id, sagaId, orderId });
		const next = await cluster.call("carts.get", {}, me);
		expect(next.id).to.not.equal(cart.id);
		expect(next.items).to.have.length(0);
	});
});
