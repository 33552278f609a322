/**
 * carts against the real servers: the cart commands' failure conditions, totals at current prices,
 * guest carts and their merge after login (capped to stock), carts following price changes and
 * deleted products, and inactive carts expiring on one replica at a time.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { Cluster, eventually, EventRecorder, recordEvents, refusal, startCluster } from "../support/cluster";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };
const customer = () => ({ user: { id: randomUUID(), role: "customer", email: "c@test.local" } });

describe("carts (real RabbitMQ and Postgres)", function () {
	this.timeout(60_000);
	let cluster: Cluster;
	let events: EventRecorder;

	before(async () => {
		cluster = await startCluster([[], ["catalog", "inventory"], ["carts"]]);
		events = await recordEvents(cluster.broker, ["cart.created", "cart.item_added", "cart.item_removed", "cart.merged"]);
	});
	after(async () => cluster?.stop());

	async function product(stock: number, price = 2500, activate = true, extra: Record<string, unknown> = {}) {
		const cat = await cluster.call("catalog.createCategory", { name: `Carts ${randomUUID().slice(0, 8)}` });
		const p = await cluster.call("catalog.createProduct", { name: "Mug", price: { amount: price, currency: "PLN" }, categoryId: cat.id, initialStock: stock, ...extra }, admin);
		if (activate) await cluster.call("catalog.activateProduct", { id: p.id }, admin);
		const skus = p.variants.length > 0 ? p.variants.map((v: any) => v.sku) : [p.sku];
		for (const sku of skus) await eventually(() => cluster.call("inventory.get", { sku }).catch(() => null), 15_000, "stock row");
		return p;
	}
	const guest = async () => {
		const g = await cluster.call("carts.createGuest", {});
		return { ...g, meta: { guestToken: g.guestToken } };
	};

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
		// Soft reservation is off by default: a cart holds no stock.
		expect(await cluster.call("inventory.get", { sku: p.sku })).to.include({ reserved: 0, available: 3 });
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
		expect((await cluster.call("carts.addItem", { productId: p.id, variantId: randomUUID(), quantity: 1 }, me).catch(e => e)).code).to.equal(404);
		expect((await cluster.call("carts.addItem", { productId: p.id, variantId: "blue", quantity: 1 }, me).catch(e => e)).code).to.equal(422);
		await cluster.call("catalog.deleteProduct", { id: draft.id }, admin);
		expect((await cluster.call("carts.addItem", { productId: draft.id, quantity: 1 }, me).catch(e => e)).code).to.equal(404);
		expect((await cluster.call("carts.get", {}, me)).items).to.have.length(0);
	});

	it("a removal can be undone once: the line comes back capped to the stock; anything else is 404 and changes nothing", async () => {
		const me = customer();
		const a = await product(5, 1000);
		const b = await product(5, 300);
		await cluster.call("carts.addItem", { productId: a.id, quantity: 2 }, me);
		const cart = await cluster.call("carts.addItem", { productId: b.id, quantity: 4 }, me);
		const lineA = cart.items.find((l: any) => l.productId === a.id);
		const lineB = cart.items.find((l: any) => l.productId === b.id);
		await cluster.call("carts.removeItem", { itemId: lineA.id }, me);
		const afterB = await cluster.call("carts.removeItem", { itemId: lineB.id }, me);
		expect(afterB.items).to.have.length(0);
		expect(afterB.lastRemoved).to.include({ itemId: lineB.id, productId: b.id, quantity: 4 });

		// Only the line removed last comes back.
		expect((await refusal(cluster.call("carts.restoreItem", { itemId: lineA.id }, me))).code).to.equal(404);
		expect((await refusal(cluster.call("carts.restoreItem", { itemId: lineB.id }, customer()))).code, "not someone else's").to.equal(404);
		expect((await cluster.call("carts.get", {}, me)).items).to.have.length(0);

		// Meanwhile the stock fell to 3: the line comes back capped, once.
		await cluster.call("inventory.set", { sku: b.sku, quantity: 3, reason: "count" }, admin);
		const restored = await cluster.call("carts.restoreItem", { itemId: lineB.id }, me);
		expect(restored.items.map((l: any) => [l.productId, l.quantity])).to.deep.equal([[b.id, 3]]);
		expect(restored.total).to.deep.equal({ amount: 900, currency: "PLN" });
		expect(restored.lastRemoved).to.equal(null);
		expect((await refusal(cluster.call("carts.restoreItem", { itemId: lineB.id }, me))).code, "a second undo").to.equal(404);
		expect((await cluster.call("carts.get", {}, me)).items.map((l: any) => l.quantity)).to.deep.equal([3]);
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
		expect(locked.lines).to.deep.equal([{ productId: p.id, variantId: null, categoryId: p.categoryId ?? null, sku: p.sku, name: "Mug", quantity: 1, unitPrice: { amount: 2500, currency: "PLN" } }]);
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

	it("a product with variants needs one: without it 422 naming variantId; with it the line is the variant's SKU", async () => {
		const me = customer();
		const tag = randomUUID().slice(0, 6);
		const p = await product(3, 4000, true, { variants: [{ sku: `RED-${tag}`, name: "red" }, { sku: `BLUE-${tag}`, name: "blue", initialStock: 0 }] });
		const err = await refusal(cluster.call("carts.addItem", { productId: p.id, quantity: 1 }, me));
		expect(err.code).to.equal(422);
		expect(err.data.map((d: any) => d.field)).to.include("variantId");
		expect((await refusal(cluster.call("carts.addItem", { productId: p.id, variantId: p.variants[1].id, quantity: 1 }, me))).type).to.equal("OUT_OF_STOCK");
		expect((await cluster.call("carts.get", {}, me)).items).to.have.length(0);
		const cart = await cluster.call("carts.addItem", { productId: p.id, variantId: p.variants[0].id, quantity: 5 }, me);
		expect(cart.items[0]).to.include({ sku: `RED-${tag}`, variantId: p.variants[0].id, quantity: 3, name: "Mug (red)", categoryId: p.categoryId });
	});

	it("a guest makes a cart, reaches it with its token only, and cart.created is published", async () => {
		const g = await guest();
		expect(g.guestToken).to.match(/^[A-Za-z0-9_-]{20,}$/);
		await events.waitFor("cart.created", e => e.aggregate_id === g.cartId);
		const p = await product(5);
		const cart = await cluster.call("carts.addItem", { productId: p.id, quantity: 2 }, g.meta);
		expect(cart).to.include({ id: g.cartId, customerId: null, guest: true });
		expect((await cluster.call("carts.get", {}, g.meta)).itemCount).to.equal(2);
		expect((await refusal(cluster.call("carts.get", {}))).code).to.equal(401);
		expect((await refusal(cluster.call("carts.get", {}, { guestToken: "x".repeat(32) }))).code).to.equal(404);
		// Another guest's cart is another cart.
		expect((await cluster.call("carts.get", {}, (await guest()).meta)).items).to.have.length(0);
	});

	it("after login the guest cart joins the customer's cart, capped to stock; cart.merged; the guest cart is gone", async () => {
		const me = customer();
		const g = await guest();
		const scarce = await product(4, 1000);
		const plenty = await product(10, 500);
		await cluster.call("carts.addItem", { productId: scarce.id, quantity: 2 }, me);
		await cluster.call("carts.addItem", { productId: scarce.id, quantity: 3 }, g.meta);
		await cluster.call("carts.addItem", { productId: plenty.id, quantity: 1 }, g.meta);
		await cluster.call("inventory.adjust", { sku: scarce.sku, adjustment: -1, reason: "broken" }, admin); // 3 left now

		const merged = await cluster.call("carts.merge", { guestToken: g.guestToken }, me);
		const bySku = Object.fromEntries(merged.items.map((i: any) => [i.sku, i.quantity]));
		expect(bySku).to.deep.equal({ [scarce.sku]: 3, [plenty.sku]: 1 });
		expect(merged.merged.find((m: any) => m.sku === scarce.sku)).to.include({ requested: 3, quantity: 3, capped: true });
		const event = await events.waitFor("cart.merged", e => e.aggregate_id === merged.id);
		expect(event.payload).to.include({ cartId: merged.id, guestCartId: g.cartId, customerId: me.user.id });
		expect((event.payload as any).mergedItems).to.have.length(2);

		expect((await refusal(cluster.call("carts.get", {}, g.meta))).code).to.equal(404);
		const again = await refusal(cluster.call("carts.merge", { guestToken: g.guestToken }, me));
		expect(again).to.include({ code: 404 });
		expect(await refusal(cluster.call("carts.merge", { guestToken: "y".repeat(32) }, me))).to.include({ code: 404 });
		expect((await refusal(cluster.call("carts.merge", { guestToken: "short" }, me))).code).to.equal(422);
		expect((await refusal(cluster.call("carts.merge", { guestToken: g.guestToken }))).code).to.equal(401);
		expect((await cluster.call("carts.get", {}, me)).itemCount).to.equal(4);
	});

	it("a merge repeated with its Idempotency-Key answers the merged cart (not 404), and two at once merge the lines once", async () => {
		const me = customer();
		const g = await guest();
		const p = await product(10, 700);
		await cluster.call("carts.addItem", { productId: p.id, quantity: 1 }, me);
		await cluster.call("carts.addItem", { productId: p.id, quantity: 2 }, g.meta);
		const key = randomUUID();
		const first = await cluster.call("carts.merge", { guestToken: g.guestToken }, { ...me, idempotencyKey: key });
		expect(first.items.map((i: any) => i.quantity)).to.deep.equal([3]);
		const again = await cluster.call("carts.merge", { guestToken: g.guestToken }, { ...me, idempotencyKey: key });
		expect(again.merged).to.deep.equal(first.merged);
		expect(again.items).to.deep.equal(first.items);
		// Without the key a second merge is a second request: the guest cart is gone.
		expect(await refusal(cluster.call("carts.merge", { guestToken: g.guestToken }, me))).to.include({ code: 404 });

		// Two copies of one request at once (a client's retry racing its original): one merge.
		const other = customer();
		const g2 = await guest();
		await cluster.call("carts.addItem", { productId: p.id, quantity: 2 }, g2.meta);
		const key2 = randomUUID();
		const twins = await Promise.all([0, 1].map(() => cluster.call("carts.merge", { guestToken: g2.guestToken }, { ...other, idempotencyKey: key2 })));
		expect(twins[0].merged).to.deep.equal(twins[1].merged);
		expect((await cluster.call("carts.get", {}, other)).items.map((i: any) => i.quantity)).to.deep.equal([2]);
		expect((await refusal(cluster.call("carts.get", {}, g2.meta))).code).to.equal(404); // the guest cart ended
	});

	it("a price change reaches every open cart, which says so; the checkout that follows takes the new price", async () => {
		const me = customer();
		const g = await guest();
		const p = await product(5, 2500);
		await cluster.call("carts.addItem", { productId: p.id, quantity: 2 }, me);
		await cluster.call("carts.addItem", { productId: p.id, quantity: 1 }, g.meta);
		await cluster.call("catalog.updateProduct", { id: p.id, price: { amount: 1999, currency: "PLN" } }, admin);
		const cart = await eventually(async () => {
			const c = await cluster.call("carts.get", {}, me);
			return c.notices.length > 0 ? c : null;
		}, 15_000, "the price notice");
		expect(cart.total).to.deep.equal({ amount: 3998, currency: "PLN" });
		expect(cart.notices[0]).to.include({ kind: "price_changed", productId: p.id });
		expect(cart.notices[0].from).to.deep.equal({ amount: 2500, currency: "PLN" });
		expect(cart.notices[0].to).to.deep.equal({ amount: 1999, currency: "PLN" });
		expect(cart.notices[0].message).to.include("25.00 PLN").and.include("19.99 PLN");
		await eventually(async () => (await cluster.call("carts.get", {}, g.meta)).notices.length === 1, 15_000, "the guest's notice");
		const locked = await cluster.call("carts.lock", { cartId: cart.id, sagaId: randomUUID() });
		expect(locked.lines[0].unitPrice).to.deep.equal({ amount: 1999, currency: "PLN" });
		expect(locked.total).to.deep.equal({ amount: 3998, currency: "PLN" });
	});

	it("a deleted product leaves every cart, and each cart tells why; a deactivated one too", async () => {
		const a = customer();
		const b = customer();
		const g = await guest();
		const doomed = await product(10);
		const kept = await product(10);
		for (const meta of [a, b, g.meta]) await cluster.call("carts.addItem", { productId: doomed.id, quantity: 1 }, meta);
		await cluster.call("carts.addItem", { productId: kept.id, quantity: 1 }, a);
		await cluster.call("catalog.deleteProduct", { id: doomed.id }, admin);
		for (const meta of [a, b, g.meta]) {
			const cart = await eventually(async () => {
				const c = await cluster.call("carts.get", {}, meta);
				return c.items.every((i: any) => i.productId !== doomed.id) ? c : null;
			}, 15_000, "the deleted product to leave the cart");
			expect(cart.notices[0]).to.include({ kind: "item_removed", productId: doomed.id, reason: "product.deleted" });
			expect(cart.notices[0].message).to.match(/removed/);
		}
		expect((await cluster.call("carts.get", {}, a)).items.map((i: any) => i.productId)).to.deep.equal([kept.id]);
		await eventually(() => events.of("cart.item_removed").filter(e => (e.payload as any).productId === doomed.id).length === 3, 15_000, "three cart.item_removed");

		await cluster.call("catalog.deactivateProduct", { id: kept.id }, admin);
		const cart = await eventually(async () => {
			const c = await cluster.call("carts.get", {}, a);
			return c.items.length === 0 ? c : null;
		}, 15_000, "the deactivated product to leave the cart");
		expect(cart.notices[0]).to.include({ kind: "item_removed", reason: "product.deactivated" });
	});
});

describe("carts expire when nobody touches them, on one replica at a time", function () {
	this.timeout(60_000);
	let cluster: Cluster;
	let events: EventRecorder;
	const saved = { ttl: process.env.CART_TTL_MS, interval: process.env.CART_EXPIRY_INTERVAL_MS };

	before(async () => {
		process.env.CART_TTL_MS = "1500";
		process.env.CART_EXPIRY_INTERVAL_MS = "100";
		cluster = await startCluster([[], ["catalog", "inventory"], ["carts"], ["carts"]]);
		events = await recordEvents(cluster.broker, ["cart.expired"]);
	});
	after(async () => {
		await cluster?.stop();
		for (const [k, v] of [["CART_TTL_MS", saved.ttl], ["CART_EXPIRY_INTERVAL_MS", saved.interval]] as const) {
			if (v === undefined) delete process.env[k];
			else process.env[k] = v;
		}
	});

	it("each inactive cart with lines expires exactly once (cart.expired), and its customer starts a new one", async () => {
		const cat = await cluster.call("catalog.createCategory", { name: `Exp ${randomUUID().slice(0, 8)}` });
		const p = await cluster.call("catalog.createProduct", { name: "Mug", price: { amount: 100, currency: "PLN" }, categoryId: cat.id, initialStock: 50 }, admin);
		await cluster.call("catalog.activateProduct", { id: p.id }, admin);
		await eventually(() => cluster.call("inventory.get", { sku: p.sku }).catch(() => null), 15_000, "stock row");
		const people = Array.from({ length: 6 }, customer);
		const carts = [];
		for (const me of people) carts.push(await cluster.call("carts.addItem", { productId: p.id, quantity: 1 }, me));
		const empty = await cluster.call("carts.get", {}, customer());
		for (const c of carts) await events.waitFor("cart.expired", e => e.aggregate_id === c.id, 20_000);
		await new Promise(r => setTimeout(r, 1000));
		for (const c of carts) expect(events.of("cart.expired", c.id), c.id).to.have.length(1);
		expect(events.of("cart.expired", empty.id)).to.have.length(0);
		const first = events.of("cart.expired", carts[0].id)[0]!;
		expect(first.payload).to.include({ cartId: carts[0].id, customerId: people[0]!.user.id });
		expect(first.payload).to.have.property("lastActivityDate");
		const next = await cluster.call("carts.get", {}, people[0]);
		expect(next.id).to.not.equal(carts[0].id);
		expect(next.items).to.have.length(0);
	});
});

describe("carts with soft reservation on (CART_HOLD_MS)", function () {
	this.timeout(60_000);
	let cluster: Cluster;
	const saved = { hold: process.env.CART_HOLD_MS, interval: process.env.HOLD_EXPIRY_INTERVAL_MS };

	before(async () => {
		process.env.CART_HOLD_MS = "2500";
		process.env.HOLD_EXPIRY_INTERVAL_MS = "200";
		cluster = await startCluster([[], ["catalog", "inventory"], ["carts"]]);
	});
	after(async () => {
		await cluster?.stop();
		for (const [k, v] of [["CART_HOLD_MS", saved.hold], ["HOLD_EXPIRY_INTERVAL_MS", saved.interval]] as const) {
			if (v === undefined) delete process.env[k];
			else process.env[k] = v;
		}
	});

	async function product(stock: number) {
		const cat = await cluster.call("catalog.createCategory", { name: `Hold ${randomUUID().slice(0, 8)}` });
		const p = await cluster.call("catalog.createProduct", { name: "Vase", price: { amount: 900, currency: "PLN" }, categoryId: cat.id, initialStock: stock }, admin);
		await cluster.call("catalog.activateProduct", { id: p.id }, admin);
		await eventually(() => cluster.call("inventory.get", { sku: p.sku }).catch(() => null), 15_000, "stock row");
		return p;
	}
	const stock = (sku: string) => cluster.call("inventory.get", { sku });

	it("a cart's lines hold their stock: others cannot take it; changing and removing give it back", async () => {
		const p = await product(4);
		const a = customer();
		const b = customer();
		const cartA = await cluster.call("carts.addItem", { productId: p.id, quantity: 3 }, a);
		expect(await stock(p.sku)).to.include({ onHand: 4, reserved: 3, available: 1 });
		// The holder may still raise its own line up to what is there.
		const cartB = await cluster.call("carts.addItem", { productId: p.id, quantity: 2 }, b);
		expect(cartB.items[0].quantity, "capped to what A does not hold").to.equal(1);
		expect(await stock(p.sku)).to.include({ reserved: 4, available: 0 });
		expect((await refusal(cluster.call("carts.addItem", { productId: p.id, quantity: 1 }, customer()))).type).to.equal("OUT_OF_STOCK");
		await cluster.call("carts.updateItem", { itemId: cartA.items[0].id, quantity: 2 }, a);
		expect(await stock(p.sku)).to.include({ reserved: 3, available: 1 });
		await cluster.call("carts.removeItem", { itemId: cartA.items[0].id }, a);
		expect(await stock(p.sku)).to.include({ reserved: 1, available: 3 });
		const audit = await cluster.call("inventory.audit", { sku: p.sku }, admin);
		expect(audit.rows.map((r: any) => r.change)).to.include.members(["held", "unheld"]);
	});

	it("at checkout the hold becomes the order's reservation in one step: never free in between, a repeat is a no-op, a refusal keeps the hold", async () => {
		const p = await product(3);
		const me = customer();
		const cart = await cluster.call("carts.addItem", { productId: p.id, quantity: 2 }, me);
		const sagaId = randomUUID();
		const locked = await cluster.call("carts.lock", { cartId: cart.id, sagaId });
		// Locked for checkout, the cart still holds its units: nobody can take them before the order reserves.
		expect(await stock(p.sku)).to.include({ onHand: 3, reserved: 2, available: 1 });
		const other = await cluster.call("carts.addItem", { productId: p.id, quantity: 3 }, customer());
		expect(other.items[0].quantity, "another shopper gets only what is not held").to.equal(1);
		expect(await stock(p.sku)).to.include({ reserved: 3, available: 0 });

		// A refused reservation (more than there is) leaves the hold exactly as it was.
		const tooMuch = await refusal(cluster.call("inventory.reserve", { orderId: randomUUID(), cartId: cart.id, lines: [{ sku: p.sku, quantity: 3 }] }));
		expect(tooMuch.type).to.equal("OUT_OF_STOCK");
		expect(await stock(p.sku)).to.include({ reserved: 3, available: 0 });

		const orderId = randomUUID();
		const lines = locked.lines.map((l: any) => ({ sku: l.sku, quantity: l.quantity }));
		expect(await cluster.call("inventory.reserve", { orderId, cartId: cart.id, lines })).to.deep.equal({ orderId, lines: [{ sku: p.sku, quantity: 2 }] });
		expect(await stock(p.sku), "the held units moved to the order; nothing was freed or added").to.include({ onHand: 3, reserved: 3, available: 0 });
		expect(await cluster.call("inventory.reserve", { orderId, cartId: cart.id, lines })).to.deep.equal({ orderId, lines: [{ sku: p.sku, quantity: 2 }] });
		expect(await stock(p.sku), "a repeated reserve changes nothing").to.include({ reserved: 3 });
		const reserved = (await cluster.call("inventory.audit", { sku: p.sku }, admin)).rows.filter((r: any) => r.orderId === orderId);
		expect(reserved.map((r: any) => r.reservedDelta), "one audit row: the units not held before (none)").to.deep.equal([0]);

		// The order failed: its stock goes back, the cart is unlocked and holds its lines again.
		await cluster.call("inventory.release", { orderId, reason: "payment declined" });
		expect(await stock(p.sku)).to.include({ reserved: 1, available: 2 });
		await cluster.call("carts.unlock", { cartId: cart.id, sagaId });
		expect(await stock(p.sku)).to.include({ reserved: 3, available: 0 });
	});

	it("a hold expires after CART_HOLD_MS; the line stays in the cart", async () => {
		const p = await product(2);
		const me = customer();
		await cluster.call("carts.addItem", { productId: p.id, quantity: 2 }, me);
		expect(await stock(p.sku)).to.include({ reserved: 2 });
		await eventually(async () => (await stock(p.sku)).reserved === 0, 15_000, "the hold to expire");
		expect((await cluster.call("carts.get", {}, me)).items[0].quantity).to.equal(2);
	});
});
