/**
 * shipping against the real servers, with TWO shipping replicas started at once: the default
 * methods exist once, admin changes are validated, quotes follow the price / free-over / express /
 * delivery-window rules, and the checkout's selections are recorded as events. Every refusal is
 * checked to change nothing (no method row, no outbox row).
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { refusal, useShop } from "../support/cluster";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };
const PLN = (amount: number) => ({ amount, currency: "PLN" });

function day(offset: number): string {
	const d = new Date();
	d.setUTCDate(d.getUTCDate() + offset);
	return d.toISOString().slice(0, 10);
}

describe("shipping (real RabbitMQ and Postgres, two shipping replicas)", function () {
	this.timeout(60_000);
	const shop = useShop([["shipping"], ["shipping"]], ["shipping.method_selected", "shipping.address_provided", "shipping.delivery_date_selected"]);
	const schema = `${process.env.SCHEMA_PREFIX}shipping`;
	const methods = () => shop.db.withSchema(schema).table("methods").orderBy("id");
	const outboxCount = async () => Number((await shop.db.withSchema(schema).table("outbox").count<{ n: string }[]>("* as n"))[0]!.n);

	/** The state a refusal must leave as it was. */
	async function snapshot() {
		return { methods: await methods(), outbox: await outboxCount() };
	}

	async function method(overrides: Record<string, unknown> = {}) {
		return shop.call("shipping.createMethod", {
			name: `Van ${randomUUID().slice(0, 8)}`, carrier: "GLS", price: PLN(2500), freeOver: PLN(50000), countries: ["PL", "DE"],
			deliveryDays: { min: 2, max: 4 }, expressFee: PLN(1000), ...overrides
		}, admin);
	}

	describe("methods", () => {
		it("a fresh shop has a courier and a parcel-locker method, once although two replicas started together", async () => {
			// Other files of this run may have added methods of their own to the schema.
			const seeded = (await methods()).map(r => r.name).filter(n => n === "Courier" || n === "Parcel locker");
			expect(seeded.sort()).to.deep.equal(["Courier", "Parcel locker"]);
			const list = await shop.call("shipping.listMethods", {});
			const courier = list.find((m: any) => m.name === "Courier");
			const locker = list.find((m: any) => m.name === "Parcel locker");
			expect(courier).to.deep.include({ carrier: "DPD", price: PLN(1999), freeOver: PLN(30000), deliveryDays: { min: 1, max: 5 }, expressFee: PLN(1500), active: true });
			expect(courier.countries).to.include("PL");
			expect(locker).to.deep.include({ carrier: "InPost", price: PLN(1299), countries: ["PL"], expressFee: null });
		});

		it("an admin creates and changes a method; listMethods filters by country and hides retired methods from customers", async () => {
			const m = await method({ countries: ["FR"] });
			expect(m).to.deep.include({ carrier: "GLS", price: PLN(2500), freeOver: PLN(50000), countries: ["FR"], deliveryDays: { min: 2, max: 4 }, expressFee: PLN(1000), active: true });
			expect((await shop.call("shipping.listMethods", { country: "fr" })).map((x: any) => x.id)).to.deep.equal([m.id]);
			expect((await shop.call("shipping.listMethods", { country: "PL" })).map((x: any) => x.id)).not.to.include(m.id);

			const changed = await shop.call("shipping.updateMethod", { id: m.id, price: PLN(2700), freeOver: null, deliveryDays: { min: 1, max: 2 } }, admin);
			expect(changed).to.deep.include({ price: PLN(2700), freeOver: null, deliveryDays: { min: 1, max: 2 }, expressFee: PLN(1000), name: m.name });

			await shop.call("shipping.updateMethod", { id: m.id, active: false }, admin);
			expect((await shop.call("shipping.listMethods", { country: "FR" })).map((x: any) => x.id)).to.deep.equal([]);
			expect((await shop.call("shipping.listMethods", { country: "FR" }, admin)).map((x: any) => [x.id, x.active])).to.deep.equal([[m.id, false]]);
			expect(await shop.call("shipping.getMethod", { id: m.id })).to.include({ active: false });
		});

		it("bad methods are refused with 422 naming the field, a taken name with 409, and nothing is stored", async () => {
			const existing = await method();
			const before = await snapshot();
			for (const [what, params, field] of [
				["no name", { name: undefined }, "name"],
				["no carrier", { carrier: undefined }, "carrier"],
				["negative price", { price: PLN(-1) }, "price.amount"],
				["fractional price", { price: PLN(10.5) }, "price.amount"],
				["unknown currency", { price: { amount: 100, currency: "XXX" } }, "price.currency"],
				["no countries", { countries: [] }, "countries"],
				["a country that is not a code", { countries: ["Poland"] }, "countries.0"],
				["the same country twice", { countries: ["PL", "pl"] }, "countries.1"],
				["window ending before it starts", { deliveryDays: { min: 5, max: 2 } }, "deliveryDays.max"],
				["negative window", { deliveryDays: { min: -1, max: 2 } }, "deliveryDays.min"],
				["freeOver in another currency", { freeOver: { amount: 100, currency: "EUR" } }, "freeOver.currency"],
				["express fee in another currency", { expressFee: { amount: 100, currency: "EUR" } }, "expressFee.currency"],
				["an unknown field", { colour: "red" }, "colour"]
			] as [string, Record<string, unknown>, string][]) {
				const params2: Record<string, unknown> = { name: `X ${randomUUID().slice(0, 6)}`, carrier: "GLS", price: PLN(100), countries: ["PL"], deliveryDays: { min: 1, max: 2 }, ...params };
				for (const k of Object.keys(params2)) if (params2[k] === undefined) delete params2[k];
				const err = await refusal(shop.call("shipping.createMethod", params2, admin));
				expect(err.code, what).to.equal(422);
				expect(err.data.map((d: any) => d.field), what).to.include(field);
			}
			const taken = await refusal(method({ name: existing.name.toUpperCase() }));
			expect(taken).to.include({ code: 409, type: "NAME_TAKEN" });

			for (const [what, params, code, field] of [
				["nothing to change", { id: existing.id }, 422, undefined],
				["unknown method", { id: randomUUID(), price: PLN(1) }, 404, undefined],
				["not a uuid", { id: "courier", price: PLN(1) }, 422, "id"],
				["price in a currency its freeOver is not", { id: existing.id, price: { amount: 100, currency: "EUR" } }, 422, "freeOver.currency"],
				["window ending before it starts", { id: existing.id, deliveryDays: { min: 3, max: 1 } }, 422, "deliveryDays.max"]
			] as const) {
				const err = await refusal(shop.call("shipping.updateMethod", params, admin));
				expect(err.code, what).to.equal(code);
				if (field) expect(err.data.map((d: any) => d.field), what).to.include(field);
			}
			const nameTaken = await refusal(shop.call("shipping.updateMethod", { id: existing.id, name: "courier" }, admin));
			expect(nameTaken).to.include({ code: 409, type: "NAME_TAKEN" });
			expect(await snapshot()).to.deep.equal(before);
		});
	});

	describe("quotes", () => {
		it("the price, free over the threshold, express adding its fee, the earliest date by default", async () => {
			const m = await method();
			const q = await shop.call("shipping.quote", { methodId: m.id, country: "PL", cartTotal: PLN(10000) });
			expect(q).to.deep.include({ price: PLN(2500), basePrice: PLN(2500), expressFee: PLN(0), free: false, express: false, deliveryDate: day(2), window: { from: day(2), to: day(4) } });
			expect(q.method.id).to.equal(m.id);
			const atThreshold = await shop.call("shipping.quote", { methodId: m.id, country: "DE", cartTotal: PLN(50000) });
			expect(atThreshold).to.deep.include({ price: PLN(0), free: true });
			const justUnder = await shop.call("shipping.quote", { methodId: m.id, country: "DE", cartTotal: PLN(49999) });
			expect(justUnder).to.deep.include({ price: PLN(2500), free: false });
			const express = await shop.call("shipping.quote", { methodId: m.id, country: "PL", cartTotal: PLN(10000), deliveryDate: day(4), express: true });
			expect(express).to.deep.include({ price: PLN(3500), basePrice: PLN(2500), expressFee: PLN(1000), express: true, deliveryDate: day(4) });
			const freeExpress = await shop.call("shipping.quote", { methodId: m.id, country: "PL", cartTotal: PLN(60000), express: true });
			expect(freeExpress).to.deep.include({ price: PLN(1000), basePrice: PLN(0), free: true });
		});

		it("refuses with 422 naming the field: unknown or retired method, country not served, past date, date outside the window, no express, other currency", async () => {
			const m = await method();
			const locker = (await shop.call("shipping.listMethods", {})).find((x: any) => x.name === "Parcel locker");
			const retired = await method();
			await shop.call("shipping.updateMethod", { id: retired.id, active: false }, admin);
			const base = { methodId: m.id, country: "PL", cartTotal: PLN(10000) };
			for (const [what, params, field] of [
				["unknown method", { ...base, methodId: randomUUID() }, "methodId"],
				["retired method", { ...base, methodId: retired.id }, "methodId"],
				["country not served", { ...base, country: "US" }, "country"],
				["not a country code", { ...base, country: "Poland" }, "country"],
				["yesterday", { ...base, deliveryDate: day(-1) }, "deliveryDate"],
				["before the window", { ...base, deliveryDate: day(1) }, "deliveryDate"],
				["after the window", { ...base, deliveryDate: day(5) }, "deliveryDate"],
				["not a date", { ...base, deliveryDate: "tomorrow" }, "deliveryDate"],
				["not a calendar date", { ...base, deliveryDate: "2031-02-30" }, "deliveryDate"],
				["express where there is none", { ...base, methodId: locker.id, express: true }, "express"],
				["cart in another currency", { ...base, cartTotal: { amount: 100, currency: "EUR" } }, "cartTotal.currency"],
				["no cart total", { methodId: m.id, country: "PL" }, "cartTotal"]
			] as const) {
				const err = await refusal(shop.call("shipping.quote", params));
				expect(err.code, what).to.equal(422);
				expect(err.type, what).to.equal("VALIDATION_ERROR");
				expect(err.data.map((d: any) => d.field), what).to.include(field);
			}
		});
	});

	describe("the checkout's selections", () => {
		it("selectMethod, provideAddress and selectDeliveryDate answer and record their events", async () => {
			const m = await method();
			const checkoutId = randomUUID();
			const address = { street: "Długa 1", city: "Kraków", postalCode: "31-001", country: "pl", firstName: "Ada" };
			const provided = await shop.call("shipping.provideAddress", { checkoutId, address });
			expect(provided.country).to.equal("PL");
			expect(provided.methods.map((x: any) => x.id)).to.include.members([m.id]);
			const e1 = await shop.events.waitFor("shipping.address_provided", e => e.aggregate_id === checkoutId);
			// No street, city or postal code in an event: personal data stays with the checkout.
			expect(e1.payload).to.deep.equal({ checkoutId, country: "PL", addressId: null });
			const bookId = randomUUID();
			await shop.call("shipping.provideAddress", { checkoutId, address: { ...address, addressId: bookId } });
			await shop.events.waitFor("shipping.address_provided", e => e.aggregate_id === checkoutId && (e.payload as any).addressId === bookId);

			const selected = await shop.call("shipping.selectMethod", { checkoutId, methodId: m.id, country: "PL", cartTotal: PLN(60000) });
			expect(selected.price).to.deep.equal(PLN(0));
			const e2 = await shop.events.waitFor("shipping.method_selected", e => e.aggregate_id === checkoutId);
			expect(e2.payload).to.deep.equal({ checkoutId, methodId: m.id, methodName: m.name, carrier: "GLS", price: PLN(0) });

			const dated = await shop.call("shipping.selectDeliveryDate", { checkoutId, methodId: m.id, country: "PL", cartTotal: PLN(10000), deliveryDate: day(3), express: true });
			expect(dated).to.deep.include({ checkoutId, deliveryDate: day(3), express: true, price: PLN(3500) });
			const e3 = await shop.events.waitFor("shipping.delivery_date_selected", e => e.aggregate_id === checkoutId);
			expect(e3.payload).to.deep.equal({ checkoutId, methodId: m.id, deliveryDate: day(3), express: true, expressFee: PLN(1000), price: PLN(3500) });
		});

		it("a refused selection records nothing", async () => {
			const m = await method();
			const checkoutId = randomUUID();
			const before = await outboxCount();
			const cases: Array<[string, string, Record<string, unknown>, string]> = [
				["unknown method", "shipping.selectMethod", { checkoutId, methodId: randomUUID() }, "methodId"],
				["country not served", "shipping.selectMethod", { checkoutId, methodId: m.id, country: "US" }, "country"],
				["no country served", "shipping.provideAddress", { checkoutId, address: { street: "Main St 1", city: "Austin", postalCode: "73301", country: "US" } }, "address.country"],
				["address without a city", "shipping.provideAddress", { checkoutId, address: { street: "Długa 1", postalCode: "31-001", country: "PL" } }, "address.city"],
				["date outside the window", "shipping.selectDeliveryDate", { checkoutId, methodId: m.id, country: "PL", cartTotal: PLN(1), deliveryDate: day(30) }, "deliveryDate"],
				["no date", "shipping.selectDeliveryDate", { checkoutId, methodId: m.id, country: "PL", cartTotal: PLN(1) }, "deliveryDate"],
				["not a checkout id", "shipping.selectMethod", { checkoutId: "abc", methodId: m.id }, "checkoutId"]
			];
			for (const [what, action, params, field] of cases) {
				const err = await refusal(shop.call(action, params));
				expect(err.code, what).to.equal(422);
				expect(err.data.map((d: any) => d.field), what).to.include(field);
			}
			expect(await outboxCount()).to.equal(before);
			await new Promise(r => setTimeout(r, 300));
			expect(shop.events.events.filter(e => e.aggregate_id === checkoutId)).to.deep.equal([]);
		});
	});
});
