/**
 * GDPR erasure (customers.erase, customer.erased) on real Moleculer nodes over RabbitMQ,
 * data in Postgres: customers (with notifications) and orders on nodes of their own, a client
 * node calling as the gateway would with the logged-in customer in meta.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { envelope } from "../../contracts/events";
import { eventually, refusal, useShop } from "../support/cluster";

const SCHEMA = `${process.env.SCHEMA_PREFIX}customers`;
const ORDERS = `${process.env.SCHEMA_PREFIX}orders`;
const PASSWORD = "Passw0rd-long";

const asCustomer = (id: string, email: string) => ({ user: { id, role: "customer", email } });
const ADDRESS = { recipientName: "Grace Hopper", street: "Hopperstraße 7", city: "Berlin", postalCode: "10115", country: "DE" };

describe("customer GDPR erasure (real RabbitMQ and Postgres)", function () {
	this.timeout(60_000);
	const shop = useShop([[], ["customers", "notifications"], ["orders"], ["payments", "inventory"]], ["customer.registered", "customer.verification_requested", "customer.erased", "order.placed"]);
	const call = shop.call;

	/** A registered customer with a distinctive name, one address, and the meta the gateway would send. */
	async function customer() {
		const tag = randomUUID().slice(0, 8);
		const email = `erase-${tag}@example.com`;
		const lastName = `Hopper${tag}`;
		const c = await call("customers.register", { email, password: PASSWORD, firstName: "Grace", lastName });
		const me = asCustomer(c.id, email);
		const address = await call("customers.addAddress", { ...ADDRESS, idempotencyKey: `addr-${tag}` }, me);
		return { id: c.id as string, email, lastName, me, address, addressKey: `addr-${tag}` };
	}

	const order = (customerId: string, customerEmail: string) =>
		call("orders.create", {
			orderId: randomUUID(),
			customerId,
			customerEmail,
			lines: [{ productId: randomUUID(), sku: "MUG-1", name: "Mug", quantity: 1, unitPrice: { amount: 1250, currency: "PLN" } }]
		});

	/** Everything customers keeps about one customer: what a refusal must leave as it was. */
	const stateOf = async (customerId: string) => ({
		customer: await shop.db.withSchema(SCHEMA).table("customers").where({ id: customerId }).first(),
		addresses: await shop.db.withSchema(SCHEMA).table("addresses").where({ customer_id: customerId }).orderBy("id"),
		tokens: await shop.db.withSchema(SCHEMA).table("email_verification_tokens").where({ customer_id: customerId }).orderBy("id"),
		events: await shop.db.withSchema(SCHEMA).table("outbox").where({ aggregate_id: customerId }).select("event_id", "event_name").orderBy("id")
	});

	it("is refused with 409 PENDING_ORDERS while an order is pending, awaiting payment or confirmed, and nothing changes; once they are over it succeeds", async () => {
		const c = await customer();
		const pending = await order(c.id, c.email);
		const awaiting = await order(c.id, c.email);
		await call("orders.markAwaitingPayment", { orderId: awaiting.id });
		const confirmed = await order(c.id, c.email);
		await call("orders.confirm", { orderId: confirmed.id });
		const before = await stateOf(c.id);

		const err = await refusal(call("customers.erase", { confirmation: true }, c.me));
		expect(err.code).to.equal(409);
		expect(err.type).to.equal("PENDING_ORDERS");
		expect(err.data.openOrders).to.equal(3);
		expect(await stateOf(c.id)).to.deep.equal(before);
		expect((await call("customers.login", { email: c.email, password: PASSWORD })).customer.id).to.equal(c.id);

		// One by one the orders end; erasure stays refused while any is open.
		await call("orders.fail", { orderId: pending.id, reason: "card declined", code: "PAYMENT_DECLINED" });
		await call("orders.fail", { orderId: awaiting.id, reason: "customer gave up" });
		expect((await refusal(call("customers.erase", { confirmation: true }, c.me))).data.openOrders).to.equal(1);
		// Shipping takes the order's reserved stock: the stock row and the reservation the checkout would have made.
		const productId = randomUUID();
		await (shop.cluster.broker as any).sendToChannel("product.created", envelope("product.created", productId, { productId, sku: "MUG-1", name: "Mug", initialStock: 100 }));
		await eventually(() => call("inventory.get", { sku: "MUG-1" }).catch(() => null), 15_000, "the stock row");
		await call("inventory.reserve", { orderId: confirmed.id, lines: [{ sku: "MUG-1", quantity: 1 }] });
		await call("orders.ship", { orderId: confirmed.id, trackingNumber: "TRK-1", carrier: "DHL" });
		expect(await stateOf(c.id)).to.deep.equal(before);

		const done = await call("customers.erase", { confirmation: true }, c.me);
		expect(done.customerId).to.equal(c.id);
		expect(new Date(done.erasedAt).getTime()).to.be.closeTo(Date.now(), 60_000);

		// orders anonymizes its copies on customer.erased.
		for (const o of [pending, awaiting, confirmed]) {
			await eventually(async () => (await call("orders.get", { id: o.id })).customerEmail === null, 15_000, `order ${o.id} anonymized`);
		}
		const kept = await shop.db.withSchema(ORDERS).table("orders").where({ customer_id: c.id });
		expect(kept.map(o => o.status).sort()).to.deep.equal(["cancelled", "payment_failed", "shipped"]);
		const orderEvents = await shop.db.withSchema(ORDERS).table("outbox").whereIn("aggregate_id", [pending.id, awaiting.id, confirmed.id]);
		expect(JSON.stringify(orderEvents.map(r => r.envelope))).to.not.include(c.email);
	});

	it("after erasure: the login fails, the profile and addresses are gone even for the JWT still held, and customer.erased carries only the id", async () => {
		const c = await customer();
		await shop.events.waitFor("customer.verification_requested", e => e.aggregate_id === c.id);
		// Let the relay mark the customer's first events sent, so they are the ones to strip.
		await eventually(async () => {
			const unsent = await shop.db.withSchema(SCHEMA).table("outbox").where({ aggregate_id: c.id }).whereNull("sent_at");
			return unsent.length === 0;
		}, 15_000, "the customer's events to be sent");

		await call("customers.erase", { confirmation: true }, c.me);

		const erased = await shop.events.waitFor("customer.erased", e => e.aggregate_id === c.id);
		expect(erased.payload).to.deep.equal({ customerId: c.id });

		const login = await refusal(call("customers.login", { email: c.email, password: PASSWORD }));
		expect(login.code).to.equal(401);
		expect(login.type).to.equal("INVALID_CREDENTIALS");
		expect((await refusal(call("customers.get", { id: c.id }))).code).to.equal(404);
		// The JWT the customer still holds reaches nothing.
		for (const [action, params] of [
			["customers.me", {}],
			["customers.updateMe", { firstName: "Back" }],
			["customers.listAddresses", {}],
			["customers.addAddress", ADDRESS],
			["customers.getAddress", { id: c.address.id }],
			["customers.deleteAddress", { id: c.address.id }],
			["customers.erase", { confirmation: true }]
		] as const) {
			expect((await refusal(call(action, params, c.me))).code, action).to.equal(404);
		}

		const s = await stateOf(c.id);
		expect(s.addresses).to.have.length(0);
		expect(s.customer).to.include({ id: c.id, email: `erased+${c.id}@erased.invalid`, first_name: "Erased", last_name: "Erased", email_verified: false });
		expect(s.customer.erased_at).to.be.instanceOf(Date);
		expect(s.customer.password_hash).to.not.match(/^\$2[aby]\$/);
		expect(s.tokens.every((t: any) => t.used_at !== null)).to.equal(true);

		// Nothing personal is left in the customers schema: neither in the published events nor in stored answers.
		const outbox = await shop.db.withSchema(SCHEMA).table("outbox").where({ aggregate_id: c.id });
		const kept = JSON.stringify(outbox.map(r => r.envelope));
		for (const personal of [c.email, c.lastName, "Grace", "Hopperstraße", "Berlin"]) expect(kept, personal).to.not.include(personal);
		expect(await shop.db.withSchema(SCHEMA).table("idempotency_keys").where({ key: c.addressKey })).to.have.length(0);
		const answers = JSON.stringify(await shop.db.withSchema(SCHEMA).table("idempotency_keys"));
		expect(answers).to.not.include(c.email);
	});

	it("the erased email can be registered again by a new person, who logs in with their own password", async () => {
		const c = await customer();
		await call("customers.erase", { confirmation: true }, c.me);
		const again = await call("customers.register", { email: c.email, password: "Another-passw0rd", firstName: "Someone", lastName: "Else" });
		expect(again.id).to.not.equal(c.id);
		expect(again).to.include({ email: c.email, firstName: "Someone", emailVerified: false });
		expect((await call("customers.login", { email: c.email, password: "Another-passw0rd" })).customer.id).to.equal(again.id);
		expect((await refusal(call("customers.login", { email: c.email, password: PASSWORD }))).code).to.equal(401);
		expect((await call("customers.listAddresses", {}, asCustomer(again.id, c.email))).total).to.equal(0);
	});

	it("without confirmation exactly true (missing, false, a string, extra fields) it is 422 and nothing changes; without a user 401", async () => {
		const c = await customer();
		const before = await stateOf(c.id);
		for (const params of [{}, { confirmation: false }, { confirmation: "true" }, { confirmation: 1 }, { confirmation: true, customerId: randomUUID() }]) {
			const err = await refusal(call("customers.erase", params, c.me));
			expect(err.code, JSON.stringify(params)).to.equal(422);
			expect(err.type).to.equal("VALIDATION_ERROR");
		}
		expect((await refusal(call("customers.erase", { confirmation: false }, c.me))).data.map((d: any) => d.field)).to.deep.equal(["confirmation"]);
		expect((await refusal(call("customers.erase", { confirmation: true }))).code).to.equal(401);
		expect(await stateOf(c.id)).to.deep.equal(before);
		expect((await call("customers.me", {}, c.me)).id).to.equal(c.id);
	});

	it("orders.countOpen counts only orders still under way, and answers a customer only about themselves", async () => {
		const c = await customer();
		expect(await call("orders.countOpen", { customerId: c.id }, c.me)).to.include({ customerId: c.id, count: 0 });
		const o = await order(c.id, c.email);
		expect((await call("orders.countOpen", { customerId: c.id })).count).to.equal(1);
		await call("orders.fail", { orderId: o.id, reason: "gave up" });
		expect((await call("orders.countOpen", { customerId: c.id })).count).to.equal(0);
		expect((await refusal(call("orders.countOpen", { customerId: c.id }, asCustomer(randomUUID(), "x@example.com")))).code).to.equal(404);
	});
});
