/**
 * Shipping addresses (customers.addAddress, customer.address_added) on real Moleculer nodes over
 * RabbitMQ, data in Postgres: a client node calls customers as the gateway would, with the
 * logged-in customer in meta; events are observed on their channel.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { POSTAL_RULES, SUPPORTED_COUNTRIES } from "../../services/customers/postal-codes";
import { refusal, useShop } from "../support/cluster";

const SCHEMA = `${process.env.SCHEMA_PREFIX}customers`;
const PASSWORD = "Passw0rd-long";

const newEmail = () => `a-${randomUUID().slice(0, 8)}@example.com`;
const asCustomer = (id: string, email = "someone@example.com") => ({ user: { id, role: "customer", email } });
const asAdmin = () => ({ user: { id: randomUUID(), role: "admin", email: "admin@test.local" } });

const WARSAW = { recipientName: "Ada Lovelace", street: "ul. Marszałkowska 1", city: "Warszawa", state: "mazowieckie", postalCode: "00-001", country: "PL" };

/** One code of the wrong shape per country, and what the 422 must quote. */
const BAD_CODES: Array<[string, string]> = [
	["PL", "00001"],
	["DE", "1011"],
	["US", "9021"],
	["GB", "12345"],
	["FR", "750080"],
	["CZ", "110-00"],
	["NL", "AB 1012"]
];

describe("customer shipping addresses (real RabbitMQ and Postgres)", function () {
	this.timeout(60_000);
	const shop = useShop([[], ["customers", "notifications"]], ["customer.address_added"]);
	const call = shop.call;

	/** A registered customer and the meta the gateway would send for them. */
	async function customer() {
		const email = newEmail();
		const c = await call("customers.register", { email, password: PASSWORD, firstName: "Ada", lastName: "Lovelace" });
		return { id: c.id as string, email, me: asCustomer(c.id, email) };
	}

	/** Everything an address request may touch: what a refusal must leave as it was. */
	const stateOf = async (customerId: string) => ({
		addresses: await shop.db.withSchema(SCHEMA).table("addresses").where({ customer_id: customerId }).orderBy("id"),
		events: Number((await shop.db.withSchema(SCHEMA).table("outbox").where({ aggregate_id: customerId, event_name: "customer.address_added" }).count("* as n"))[0]!.n)
	});

	describe("addAddress", () => {
		it("stores the address with the postal code and country in canonical form and publishes customer.address_added without the street", async () => {
			const a = await customer();
			const added = await call("customers.addAddress", { ...WARSAW, country: " pl ", postalCode: " 00-001 " }, a.me);
			expect(added).to.have.all.keys("id", "customerId", "recipientName", "street", "city", "state", "postalCode", "country", "createdAt");
			expect(added).to.include({ ...WARSAW, customerId: a.id });

			const gb = await call("customers.addAddress", { recipientName: "Ada", street: "10 Downing St", city: "London", postalCode: "sw1a2aa", country: "gb" }, a.me);
			expect(gb).to.include({ postalCode: "SW1A 2AA", country: "GB", state: null });

			const ev = await shop.events.waitFor("customer.address_added", e => e.payload.addressId === added.id);
			expect(ev.aggregate_id).to.equal(a.id);
			expect(ev.payload).to.deep.equal({ customerId: a.id, addressId: added.id, country: "PL" });
			expect(JSON.stringify(ev)).to.not.include("Marszałkowska");
		});

		it("a postal code that does not fit its country is refused with 422 naming postalCode and stating the format, and nothing is stored", async () => {
			const a = await customer();
			const before = await stateOf(a.id);
			for (const [country, postalCode] of BAD_CODES) {
				const err = await refusal(call("customers.addAddress", { ...WARSAW, country, postalCode }, a.me));
				expect(err.code, `${country} ${postalCode}`).to.equal(422);
				expect(err.type).to.equal("VALIDATION_ERROR");
				expect(err.data.map((d: any) => d.field)).to.deep.equal(["postalCode"]);
				expect(err.message).to.include(`expected ${POSTAL_RULES[country]!.format}`);
			}
			expect(await stateOf(a.id)).to.deep.equal(before);
			expect(before.addresses).to.have.length(0);
		});

		it("a country we do not ship to (or not an ISO alpha-2 code) is refused with 422 naming country and listing the supported ones, and nothing is stored", async () => {
			const a = await customer();
			for (const country of ["JP", "XX", "Poland", "POL"]) {
				const err = await refusal(call("customers.addAddress", { ...WARSAW, country }, a.me));
				expect(err.code, country).to.equal(422);
				expect(err.data.map((d: any) => d.field)).to.deep.equal(["country"]);
				expect(err.message).to.include(SUPPORTED_COUNTRIES.join(", "));
			}
			expect((await stateOf(a.id)).addresses).to.have.length(0);
		});

		it("each missing required field is refused with 422 naming it, and nothing is stored", async () => {
			const a = await customer();
			for (const field of ["recipientName", "street", "city", "postalCode", "country"]) {
				const params: Record<string, unknown> = { ...WARSAW };
				delete params[field];
				const err = await refusal(call("customers.addAddress", params, a.me));
				expect(err.code, field).to.equal(422);
				expect(err.data.map((d: any) => d.field), field).to.deep.equal([field]);
			}
			const all = await refusal(call("customers.addAddress", {}, a.me));
			expect(all.data.map((d: any) => d.field)).to.have.members(["recipientName", "street", "city", "postalCode", "country"]);
			const blank = await refusal(call("customers.addAddress", { ...WARSAW, street: "   ", city: "" }, a.me));
			expect(blank.data.map((d: any) => d.field)).to.have.members(["street", "city"]);
			expect((await stateOf(a.id)).addresses).to.have.length(0);
		});

		it("over-long fields, wrong types and unknown fields are refused with 422 naming each", async () => {
			const a = await customer();
			const long = await refusal(
				call("customers.addAddress", { ...WARSAW, recipientName: "x".repeat(201), street: "x".repeat(201), city: "x".repeat(101), state: "x".repeat(101) }, a.me)
			);
			expect(long.code).to.equal(422);
			expect(long.data.map((d: any) => d.field)).to.have.members(["recipientName", "street", "city", "state"]);
			const typed = await refusal(call("customers.addAddress", { ...WARSAW, postalCode: 1234, city: ["x"] }, a.me));
			expect(typed.data.map((d: any) => d.field)).to.have.members(["postalCode", "city"]);
			const unknown = await refusal(call("customers.addAddress", { ...WARSAW, customerId: randomUUID() }, a.me));
			expect(unknown.data.map((d: any) => d.field)).to.deep.equal(["customerId"]);
			expect((await stateOf(a.id)).addresses).to.have.length(0);
		});

		it("without a logged-in user it is 401 and nothing is stored", async () => {
			const before = Number((await shop.db.withSchema(SCHEMA).table("addresses").count("* as n"))[0]!.n);
			const err = await refusal(call("customers.addAddress", WARSAW));
			expect(err.code).to.equal(401);
			expect(Number((await shop.db.withSchema(SCHEMA).table("addresses").count("* as n"))[0]!.n)).to.equal(before);
		});

		it("a customer keeps at most 20 addresses: the 21st is refused with 409 and not stored", async () => {
			const a = await customer();
			for (let i = 0; i < 20; i++) await call("customers.addAddress", { ...WARSAW, street: `Street ${i}` }, a.me);
			const err = await refusal(call("customers.addAddress", { ...WARSAW, street: "One too many" }, a.me));
			expect(err.code).to.equal(409);
			expect(err.type).to.equal("ADDRESS_LIMIT_REACHED");
			const after = await stateOf(a.id);
			expect(after.addresses).to.have.length(20);
			expect(after.events).to.equal(20);
		});

		it("twenty-five concurrent adds still leave at most 20 addresses", async () => {
			const a = await customer();
			const answers = await Promise.allSettled(Array.from({ length: 25 }, (_, i) => call("customers.addAddress", { ...WARSAW, street: `Race ${i}` }, a.me)));
			expect(answers.filter(r => r.status === "fulfilled")).to.have.length(20);
			expect(answers.filter((r): r is PromiseRejectedResult => r.status === "rejected").map(r => r.reason.code)).to.deep.equal(Array(5).fill(409));
			expect((await stateOf(a.id)).addresses).to.have.length(20);
		});

		it("a repeat under the same idempotency key answers the same address and stores one", async () => {
			const a = await customer();
			const idempotencyKey = randomUUID();
			const first = await call("customers.addAddress", { ...WARSAW, idempotencyKey }, a.me);
			const again = await call("customers.addAddress", { ...WARSAW, idempotencyKey }, a.me);
			expect(again).to.deep.equal(first);
			expect((await stateOf(a.id)).addresses).to.have.length(1);
		});
	});

	describe("listAddresses, getAddress, deleteAddress", () => {
		it("a customer lists only their own addresses, oldest first", async () => {
			const a = await customer();
			const b = await customer();
			const a1 = await call("customers.addAddress", { ...WARSAW, street: "First" }, a.me);
			const a2 = await call("customers.addAddress", { ...WARSAW, street: "Second", country: "DE", postalCode: "10115", city: "Berlin" }, a.me);
			await call("customers.addAddress", { ...WARSAW, street: "B's" }, b.me);

			const list = await call("customers.listAddresses", {}, a.me);
			expect(list).to.deep.equal({ rows: [a1, a2], total: 2, page: 1, pageSize: 20 });
			// A customer cannot name another customer: they still get their own.
			expect((await call("customers.listAddresses", { customerId: b.id }, a.me)).rows.map((r: any) => r.id)).to.deep.equal([a1.id, a2.id]);
			expect((await call("customers.listAddresses", { customerId: a.id }, asAdmin())).total).to.equal(2);
			expect((await refusal(call("customers.listAddresses", {}))).code).to.equal(401);
		});

		it("another customer's address answers 404 to get and delete, and stays", async () => {
			const a = await customer();
			const b = await customer();
			const mine = await call("customers.addAddress", WARSAW, a.me);
			for (const action of ["customers.getAddress", "customers.deleteAddress"]) {
				const err = await refusal(call(action, { id: mine.id }, b.me));
				expect(err.code, action).to.equal(404);
				expect(err.type).to.equal("NOT_FOUND");
			}
			expect(await call("customers.getAddress", { id: mine.id }, a.me)).to.deep.equal(mine);
			expect(await call("customers.getAddress", { id: mine.id })).to.deep.equal(mine); // internal callers (checkout)
			expect((await call("customers.listAddresses", {}, a.me)).total).to.equal(1);
		});

		it("the owner deletes an address; deleting it again, an unknown id or without a user is refused", async () => {
			const a = await customer();
			const one = await call("customers.addAddress", WARSAW, a.me);
			const two = await call("customers.addAddress", { ...WARSAW, street: "Kept" }, a.me);
			expect(await call("customers.deleteAddress", { id: one.id }, a.me)).to.deep.equal({ id: one.id, deleted: true });
			expect((await call("customers.listAddresses", {}, a.me)).rows).to.deep.equal([two]);
			expect((await refusal(call("customers.deleteAddress", { id: one.id }, a.me))).code).to.equal(404);
			expect((await refusal(call("customers.deleteAddress", { id: randomUUID() }, a.me))).code).to.equal(404);
			expect((await refusal(call("customers.deleteAddress", { id: "nope" }, a.me))).code).to.equal(422);
			expect((await refusal(call("customers.deleteAddress", { id: two.id }))).code).to.equal(401);
			expect((await call("customers.listAddresses", {}, a.me)).rows).to.deep.equal([two]);
		});

		it("a delete repeated with its Idempotency-Key answers the first deletion, not 404; the key is the caller's and the address's", async () => {
			const a = await customer();
			const b = await customer();
			const one = await call("customers.addAddress", WARSAW, a.me);
			const two = await call("customers.addAddress", { ...WARSAW, street: "Kept" }, a.me);
			const key = randomUUID();
			// As the gateway sends it: the header in meta.
			const first = await call("customers.deleteAddress", { id: one.id }, { ...a.me, idempotencyKey: key });
			expect(first).to.deep.equal({ id: one.id, deleted: true });
			expect(await call("customers.deleteAddress", { id: one.id }, { ...a.me, idempotencyKey: key })).to.deep.equal(first);
			// The same key for another address is another request: it deletes that one.
			expect(await call("customers.deleteAddress", { id: two.id }, { ...a.me, idempotencyKey: key })).to.deep.equal({ id: two.id, deleted: true });
			expect((await call("customers.listAddresses", {}, a.me)).total).to.equal(0);
			// Another customer's same key does not get a's answer.
			expect((await refusal(call("customers.deleteAddress", { id: one.id }, { ...b.me, idempotencyKey: key }))).code).to.equal(404);
		});
	});
});
