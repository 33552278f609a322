/**
 * addons against the real servers: admin validation, availability by product and category (every
 * cart when an add-on names none), pricing that refuses what is not offered, and
 * addons.availability_calculated recorded only when a checkout's answer changes. Every refusal is
 * checked to change nothing.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { refusal, useShop } from "../support/cluster";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };
const PLN = (amount: number) => ({ amount, currency: "PLN" });

describe("addons (real RabbitMQ and Postgres)", function () {
	this.timeout(60_000);
	const shop = useShop([["addons"], ["addons"]], ["addons.availability_calculated"]);
	const schema = `${process.env.SCHEMA_PREFIX}addons`;
	const t = (name: string) => shop.db.withSchema(schema).table(name);
	const outboxCount = async () => Number((await t("outbox").count<{ n: string }[]>("* as n"))[0]!.n);
	const snapshot = async () => ({ addons: await t("addons").orderBy("id"), availability: await t("checkout_availability").orderBy("checkout_id"), outbox: await outboxCount() });
	const create = (p: Record<string, unknown>) => shop.call("addons.create", p, admin);
	const ids = (list: Array<{ id: string }>) => list.map(a => a.id);

	let giftWrap: any;
	before(async () => {
		giftWrap = (await shop.call("addons.list", { pageSize: 100 }, admin)).rows.find((a: any) => a.name === "Gift wrapping");
	});

	it("a fresh shop offers gift wrapping with every cart, once although two replicas started together", async () => {
		expect(await t("addons").where({ name: "Gift wrapping" })).to.have.length(1);
		expect(giftWrap).to.deep.include({ price: PLN(999), productIds: [], categoryIds: [], active: true });
		expect(ids(await shop.call("addons.available", { lines: [{ productId: randomUUID() }] }))).to.include(giftWrap.id);
		expect(await shop.call("addons.available", { lines: [] })).to.deep.equal([]);
	});

	it("an add-on is offered for its products or categories only; an admin changes and retires it", async () => {
		const [tv, fridge, other] = [randomUUID(), randomUUID(), randomUUID()];
		const appliances = randomUUID();
		const install = await create({ name: `Installation ${randomUUID().slice(0, 6)}`, description: "Set up at your home", price: PLN(4900), productIds: [tv], categoryIds: [appliances] });
		expect(install).to.deep.include({ description: "Set up at your home", price: PLN(4900), productIds: [tv], categoryIds: [appliances], active: true });
		const offered = await shop.call("addons.available", { lines: [{ productId: tv, quantity: 1 }] });
		expect(offered.find((a: any) => a.id === install.id)).to.deep.equal({ id: install.id, name: install.name, description: "Set up at your home", price: PLN(4900) });
		expect(ids(await shop.call("addons.available", { lines: [{ productId: fridge, categoryId: appliances }] }))).to.include(install.id);
		expect(ids(await shop.call("addons.available", { lines: [{ productId: other, categoryId: randomUUID() }] }))).not.to.include(install.id);
		expect(ids(await shop.call("addons.available", { lines: [{ productId: tv }], currency: "EUR" }))).not.to.include(install.id);

		const changed = await shop.call("addons.update", { id: install.id, price: PLN(5900), categoryIds: [] }, admin);
		expect(changed).to.deep.include({ price: PLN(5900), categoryIds: [], productIds: [tv] });
		expect(ids(await shop.call("addons.available", { lines: [{ productId: fridge, categoryId: appliances }] }))).not.to.include(install.id);
		await shop.call("addons.update", { id: install.id, active: false }, admin);
		expect(ids(await shop.call("addons.available", { lines: [{ productId: tv }] }))).not.to.include(install.id);
		expect(ids((await shop.call("addons.list", { active: false, pageSize: 100 }, admin)).rows)).to.include(install.id);
	});

	it("price totals the chosen add-ons (per order) and refuses one not offered for these lines with 422 naming addonIds", async () => {
		const tv = randomUUID();
		const warranty = await create({ name: `Warranty ${randomUUID().slice(0, 6)}`, price: PLN(19900), productIds: [tv] });
		const lines = [{ productId: tv, quantity: 3 }];
		const priced = await shop.call("addons.price", { addonIds: [warranty.id, giftWrap.id], lines });
		expect(priced).to.deep.equal({ total: PLN(19900 + 999), addons: [{ id: warranty.id, name: warranty.name, price: PLN(19900) }, { id: giftWrap.id, name: "Gift wrapping", price: PLN(999) }] });
		expect(await shop.call("addons.price", { addonIds: [], lines, currency: "PLN" })).to.deep.equal({ total: PLN(0), addons: [] });
		for (const [what, params] of [
			["not offered for these lines", { addonIds: [warranty.id], lines: [{ productId: randomUUID() }] }],
			["unknown add-on", { addonIds: [randomUUID()], lines }],
			["not an id", { addonIds: ["gift"], lines }],
			["the same twice", { addonIds: [giftWrap.id, giftWrap.id], lines }],
			["no lines", { addonIds: [giftWrap.id] }]
		] as const) {
			const err = await refusal(shop.call("addons.price", params));
			expect(err.code, what).to.equal(422);
			expect(err.data.map((d: any) => d.field.split(".")[0]), what).to.satisfy((f: string[]) => f.includes("addonIds") || f.includes("lines"));
		}
	});

	it("bad add-ons are refused with 422 naming the field, a taken name with 409, and nothing is stored", async () => {
		const existing = await create({ name: `Assembly ${randomUUID().slice(0, 6)}`, price: PLN(3000) });
		const before = await snapshot();
		for (const [what, params, field] of [
			["no name", { price: PLN(1) }, "name"],
			["no price", { name: "Free thing" }, "price"],
			["negative price", { name: "Neg", price: PLN(-5) }, "price.amount"],
			["unknown currency", { name: "Odd", price: { amount: 5, currency: "BTC" } }, "price.currency"],
			["a category that is not an id", { name: "Cat", price: PLN(5), categoryIds: ["kitchen"] }, "categoryIds.0"],
			["an unknown field", { name: "X", price: PLN(5), perUnit: true }, "perUnit"]
		] as const) {
			const err = await refusal(create(params));
			expect(err.code, what).to.equal(422);
			expect(err.data.map((d: any) => d.field), what).to.include(field);
		}
		expect(await refusal(create({ name: existing.name.toLowerCase(), price: PLN(1) }))).to.include({ code: 409, type: "NAME_TAKEN" });
		expect(await refusal(shop.call("addons.update", { id: existing.id, name: "gift wrapping" }, admin))).to.include({ code: 409, type: "NAME_TAKEN" });
		expect(await refusal(shop.call("addons.update", { id: randomUUID(), price: PLN(1) }, admin))).to.include({ code: 404 });
		expect(await refusal(shop.call("addons.update", { id: existing.id }, admin))).to.include({ code: 422 });
		expect(await snapshot()).to.deep.equal(before);
	});

	it("calculateAvailability records addons.availability_calculated when the checkout's answer changes, not otherwise", async () => {
		const [tv, mug] = [randomUUID(), randomUUID()];
		const install = await create({ name: `Wall mount ${randomUUID().slice(0, 6)}`, price: PLN(7900), productIds: [tv] });
		const checkoutId = randomUUID();
		const withTv = [{ productId: tv, quantity: 1 }, { productId: mug, quantity: 2 }];
		const first = await shop.call("addons.calculateAvailability", { checkoutId, lines: withTv, selectedAddonIds: [install.id] });
		expect(first).to.deep.include({ checkoutId, changed: true, total: PLN(7900) });
		expect(ids(first.available)).to.include.members([install.id, giftWrap.id]);
		const e1 = await shop.events.waitFor("addons.availability_calculated", e => e.aggregate_id === checkoutId);
		expect(e1.payload).to.deep.include({ checkoutId, cartHash: first.cartHash, totalServicesPrice: PLN(7900) });
		expect(ids((e1.payload as any).availableAddons)).to.include(install.id);

		// More mugs: the same products, the same answer — nothing recorded.
		const outbox = await outboxCount();
		const same = await shop.call("addons.calculateAvailability", { checkoutId, lines: [{ productId: mug, quantity: 5 }, { productId: tv, quantity: 1 }], selectedAddonIds: [install.id] });
		expect(same).to.deep.include({ changed: false, cartHash: first.cartHash });
		expect(await outboxCount()).to.equal(outbox);

		// The TV leaves the cart: the mount is no longer offered and drops out of the chosen ones.
		const without = await shop.call("addons.calculateAvailability", { checkoutId, lines: [{ productId: mug, quantity: 2 }], selectedAddonIds: [install.id, giftWrap.id] });
		expect(without).to.deep.include({ changed: true, total: PLN(999) });
		expect(ids(without.selected)).to.deep.equal([giftWrap.id]);
		expect(ids(without.available)).not.to.include(install.id);
		await shop.events.waitFor("addons.availability_calculated", e => e.aggregate_id === checkoutId && (e.payload as any).cartHash === without.cartHash);

		const before = await snapshot();
		const bad = await refusal(shop.call("addons.calculateAvailability", { checkoutId: "nope", lines: [] }));
		expect(bad.code).to.equal(422);
		expect(await snapshot()).to.deep.equal(before);
	});
});
