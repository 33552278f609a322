/**
 * payments on a real Moleculer node over RabbitMQ, data in Postgres, with the simulated card
 * provider. The provider is wrapped to count its calls (and, in one test, to fail a refund).
 */
import { expect } from "chai";
import knexFactory, { Knex } from "knex";
import { randomUUID } from "node:crypto";
import { Cluster, EventRecorder, recordEvents, startCluster, refusal } from "../support/cluster";
import { CountingProvider } from "../support/payments";

const EVENTS = ["payment.initiated", "payment.authorized", "payment.failed", "payment.voided", "payment.captured", "payment.refunded"];
const SCHEMA = `${process.env.SCHEMA_PREFIX}payments`;
const CARD = (cardNumber: string, expYear = 2030) => ({ cardNumber, expMonth: 12, expYear, cvc: "123" });
const NUMBERS = { ok: "4242424242424242", declined: "4000000000000002", insufficient: "4000000000009995", gatewayError: "4000000000000119", other: "5555555555554444" };
const PLN = (amount: number) => ({ amount, currency: "PLN" });

const settle = () => new Promise(r => setTimeout(r, 600)); // a duplicate event would have arrived by now

describe("payments service (real RabbitMQ and Postgres, simulated card provider)", function () {
	this.timeout(60_000);
	let cluster: Cluster;
	let events: EventRecorder;
	let db: Knex;
	let provider: CountingProvider;
	const call = <T = any>(action: string, params?: any, meta?: any) => cluster.call<T>(action, params, meta);
	const token = async (number: string) => (await call("payments.tokenize", CARD(number))).paymentToken as string;
	const forOrder = (name: string, orderId: string) => events.of(name).filter(e => e.payload.orderId === orderId);

	before(async () => {
		cluster = await startCluster([[], ["orders"], ["payments"]], { waitFor: ["orders", "payments"] });
		const svc: any = cluster.brokers[2]!.getLocalService("payments");
		provider = new CountingProvider(svc.provider);
		svc.provider = provider;
		events = await recordEvents(cluster.broker, EVENTS);
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
	});
	after(async () => {
		await cluster?.stop();
		await db?.destroy();
	});

	async function authorized(amount = 12999) {
		const orderId = randomUUID();
		const payment = await call("payments.authorize", { orderId, amount: PLN(amount), paymentToken: await token(NUMBERS.ok), idempotencyKey: `${orderId}:authorizePayment` });
		return { orderId, payment };
	}

	describe("tokenize", () => {
		it("a card becomes a token with its brand and last four digits; the number stays in the vault", async () => {
			const t = await call("payments.tokenize", { ...CARD("4242 4242 4242 4242") });
			expect(t.paymentToken).to.match(/^tok_[0-9a-f]{32}$/);
			expect(t).to.include({ brand: "visa", last4: "4242" });
			const row = await db.withSchema(SCHEMA).table("card_tokens").where({ token: t.paymentToken }).first();
			expect(row).to.include({ card_number: "4242424242424242", brand: "visa", last4: "4242" });
			expect(row).to.not.have.property("cvc");
		});

		it("a number that fails the Luhn check, or is not 13-19 digits, is refused with 422 without repeating it", async () => {
			for (const bad of ["4242424242424241", "424242424242", "42424242424242424242", "4242abcd42424242"]) {
				const err = await refusal(call("payments.tokenize", CARD(bad)));
				expect(err.code, bad).to.equal(422);
				expect(err.type).to.equal("VALIDATION_ERROR");
				expect(err.data[0].field).to.equal("cardNumber");
				expect(JSON.stringify({ m: err.message, d: err.data })).to.not.include(bad);
			}
			const cvc = await refusal(call("payments.tokenize", { ...CARD(NUMBERS.ok), cvc: "12" }));
			expect(cvc.code).to.equal(422);
			expect(cvc.data[0].field).to.equal("cvc");
		});

		it("a brand we don't take is refused with 402 UNSUPPORTED_CARD, an expired card with 402 PAYMENT_DECLINED saying so", async () => {
			const unsupported = await refusal(call("payments.tokenize", CARD("9000000000000001")));
			expect(unsupported.code).to.equal(402);
			expect(unsupported.type).to.equal("UNSUPPORTED_CARD");
			const expired = await refusal(call("payments.tokenize", CARD(NUMBERS.ok, 2020)));
			expect(expired.code).to.equal(402);
			expect(expired.type).to.equal("PAYMENT_DECLINED");
			expect(expired.message).to.match(/expired/i);
		});
	});

	describe("authorize", () => {
		it("4242 4242 4242 4242 authorizes: payment.initiated and payment.authorized are published", async () => {
			const { orderId, payment } = await authorized(12999);
			expect(payment).to.deep.include({ orderId, status: "authorized", amount: PLN(12999), last4: "4242", brand: "visa" });
			expect(payment.paymentId).to.be.a("string");
			const ev = await events.waitFor("payment.authorized", e => e.payload.orderId === orderId);
			expect(ev.payload).to.deep.include({ orderId, paymentId: payment.paymentId, amount: PLN(12999), last4: "4242", brand: "visa" });
			await events.waitFor("payment.initiated", e => e.payload.orderId === orderId);
			expect((await call("payments.list", { orderId })).map((p: any) => p.status)).to.deep.equal(["authorized"]);
		});

		it("any other valid card of a brand we take authorizes", async () => {
			const orderId = randomUUID();
			const p = await call("payments.authorize", { orderId, amount: PLN(500), paymentToken: await token(NUMBERS.other) });
			expect(p).to.include({ status: "authorized", brand: "mastercard", last4: "4444" });
		});

		it("a declined card: the failed payment and payment.failed are committed, 402 is answered, and a repeat with the key asks the provider nothing", async () => {
			const orderId = randomUUID();
			const params = { orderId, amount: PLN(4200), paymentToken: await token(NUMBERS.declined), idempotencyKey: `${orderId}:authorizePayment` };
			const before = provider.calls.authorize!;
			const err = await refusal(call("payments.authorize", params));
			expect(err.code).to.equal(402);
			expect(err.type).to.equal("PAYMENT_DECLINED");
			expect(err.message).to.match(/declined/i);

			const repeat = await refusal(call("payments.authorize", params));
			expect({ code: repeat.code, type: repeat.type, message: repeat.message }).to.deep.equal({ code: err.code, type: err.type, message: err.message });
			expect(provider.calls.authorize! - before, "provider calls").to.equal(1);

			const payments = await call("payments.list", { orderId });
			expect(payments).to.have.length(1);
			expect(payments[0]).to.deep.include({ status: "failed", amount: PLN(4200) });
			expect(payments[0].failure).to.deep.include({ type: "PAYMENT_DECLINED" });
			const failed = await events.waitFor("payment.failed", e => e.payload.orderId === orderId);
			expect(failed.payload).to.deep.include({ orderId, paymentId: payments[0].paymentId, type: "PAYMENT_DECLINED", amount: PLN(4200) });
			expect(failed.payload.reason).to.match(/declined/i);
			await settle();
			expect(forOrder("payment.failed", orderId)).to.have.length(1);
			expect(forOrder("payment.authorized", orderId)).to.have.length(0);
		});

		it("4000 0000 0000 9995 is refused with 402 INSUFFICIENT_FUNDS and recorded", async () => {
			const orderId = randomUUID();
			const err = await refusal(call("payments.authorize", { orderId, amount: PLN(100), paymentToken: await token(NUMBERS.insufficient) }));
			expect(err.code).to.equal(402);
			expect(err.type).to.equal("INSUFFICIENT_FUNDS");
			const [p] = await call("payments.list", { orderId });
			expect(p.status).to.equal("failed");
			expect(p.failure.type).to.equal("INSUFFICIENT_FUNDS");
			expect((await events.waitFor("payment.failed", e => e.payload.orderId === orderId)).payload.type).to.equal("INSUFFICIENT_FUNDS");
		});

		it("when the provider does not answer (gateway error) the call fails as temporary and nothing is recorded", async () => {
			const orderId = randomUUID();
			const params = { orderId, amount: PLN(100), paymentToken: await token(NUMBERS.gatewayError), idempotencyKey: `${orderId}:authorizePayment` };
			const err = await refusal(call("payments.authorize", params));
			expect(err.code).to.equal(503);
			expect(err.retryable).to.equal(true);
			expect(await call("payments.list", { orderId })).to.deep.equal([]);
			// Not stored under the key: a retry asks the provider again.
			const before = provider.calls.authorize!;
			await refusal(call("payments.authorize", params));
			expect(provider.calls.authorize! - before).to.equal(1);
			await settle();
			expect(forOrder("payment.initiated", orderId)).to.have.length(0);
			expect(forOrder("payment.failed", orderId)).to.have.length(0);
		});

		it("authorizing twice with the same key gives one payment and one payment.authorized; another key gets the same payment", async () => {
			const orderId = randomUUID();
			const params = { orderId, amount: PLN(2500), paymentToken: await token(NUMBERS.ok), idempotencyKey: `${orderId}:authorizePayment` };
			const first = await call("payments.authorize", params);
			const again = await call("payments.authorize", params);
			expect(again).to.deep.equal(first);
			const other = await call("payments.authorize", { ...params, paymentToken: await token(NUMBERS.ok), idempotencyKey: `${orderId}:retry` });
			expect(other.paymentId).to.equal(first.paymentId);
			const concurrent = await Promise.all([1, 2, 3].map(async () => call("payments.authorize", { ...params, idempotencyKey: undefined })));
			expect(new Set(concurrent.map(c => c.paymentId))).to.deep.equal(new Set([first.paymentId]));
			expect(await call("payments.list", { orderId })).to.have.length(1);
			await events.waitFor("payment.authorized", e => e.payload.orderId === orderId);
			await settle();
			expect(forOrder("payment.authorized", orderId)).to.have.length(1);
			expect(forOrder("payment.initiated", orderId)).to.have.length(1);
		});

		it("an unknown token or a zero amount is refused with 422", async () => {
			const orderId = randomUUID();
			const unknown = await refusal(call("payments.authorize", { orderId, amount: PLN(100), paymentToken: "tok_nope" }));
			expect(unknown.code).to.equal(422);
			expect(unknown.data[0].field).to.equal("paymentToken");
			const zero = await refusal(call("payments.authorize", { orderId, amount: PLN(0), paymentToken: await token(NUMBERS.ok) }));
			expect(zero.code).to.equal(422);
			expect(await call("payments.list", { orderId })).to.deep.equal([]);
		});
	});

	describe("void", () => {
		it("voiding after an authorization releases it: voided, payment.voided; the order cannot be authorized again", async () => {
			const { orderId, payment } = await authorized();
			const voided = await call("payments.void", { orderId, reason: "Out of stock", idempotencyKey: `${orderId}:void` });
			expect(voided).to.deep.include({ paymentId: payment.paymentId, status: "voided", voidReason: "Out of stock" });
			const ev = await events.waitFor("payment.voided", e => e.payload.orderId === orderId);
			expect(ev.payload).to.deep.include({ orderId, paymentId: payment.paymentId, reason: "Out of stock" });
			expect(await call("payments.void", { orderId, reason: "Out of stock", idempotencyKey: `${orderId}:void` })).to.deep.equal(voided);
			expect(await call("payments.void", { orderId })).to.equal(null);
			// A late (redelivered) authorization for this order is not kept.
			const late = await refusal(call("payments.authorize", { orderId, amount: PLN(12999), paymentToken: await token(NUMBERS.ok) }));
			expect(late.code).to.equal(409);
			expect((await call("payments.list", { orderId })).map((p: any) => p.status)).to.deep.equal(["voided"]);
			await settle();
			expect(forOrder("payment.voided", orderId)).to.have.length(1);
		});

		it("voiding an order that never paid is a no-op answering null", async () => {
			const orderId = randomUUID();
			const before = provider.calls.void!;
			expect(await call("payments.void", { orderId, reason: "compensation" })).to.equal(null);
			expect(provider.calls.void).to.equal(before);
			expect(await call("payments.list", { orderId })).to.deep.equal([]);
			await settle();
			expect(forOrder("payment.voided", orderId)).to.have.length(0);
		});

		it("voiding after a declined card is a no-op: the failed payment stays failed", async () => {
			const orderId = randomUUID();
			await refusal(call("payments.authorize", { orderId, amount: PLN(100), paymentToken: await token(NUMBERS.declined) }));
			expect(await call("payments.void", { orderId, reason: "declined" })).to.equal(null);
			expect((await call("payments.list", { orderId })).map((p: any) => p.status)).to.deep.equal(["failed"]);
		});
	});

	describe("capture and refund", () => {
		it("capturing an authorized payment takes it; capturing again is refused with 409", async () => {
			const { orderId, payment } = await authorized(10000);
			const captured = await call("payments.capture", { orderId });
			expect(captured).to.deep.include({ paymentId: payment.paymentId, status: "captured", capturedAmount: PLN(10000) });
			const ev = await events.waitFor("payment.captured", e => e.payload.orderId === orderId);
			expect(ev.payload).to.deep.include({ paymentId: payment.paymentId, amount: PLN(10000) });
			const again = await refusal(call("payments.capture", { orderId }));
			expect(again.code).to.equal(409);
			expect(again.type).to.equal("INVALID_TRANSITION");
			const voidCaptured = await refusal(call("payments.void", { orderId }));
			expect(voidCaptured.code).to.equal(409);
			expect((await call("payments.list", { orderId }))[0].status).to.equal("captured");
		});

		it("capturing an order without an authorized payment is refused: 404 when it never paid, 409 when voided", async () => {
			expect((await refusal(call("payments.capture", { orderId: randomUUID() }))).code).to.equal(404);
			const { orderId } = await authorized();
			await call("payments.void", { orderId });
			const err = await refusal(call("payments.capture", { orderId }));
			expect(err.code).to.equal(409);
			expect(err.type).to.equal("INVALID_TRANSITION");
		});

		it("a refund gives back part or all of the captured money, never more (409), with payment.refunded each time", async () => {
			const { orderId, payment } = await authorized(1000);
			await call("payments.capture", { orderId });
			const part = await call("payments.refund", { orderId, amount: PLN(400), reason: "one item returned" });
			expect(part).to.deep.include({ status: "partially_refunded", refundedAmount: PLN(400) });

			const tooMuch = await refusal(call("payments.refund", { orderId, amount: PLN(601) }));
			expect(tooMuch.code).to.equal(409);
			expect(tooMuch.type).to.equal("REFUND_EXCEEDS_CAPTURED");
			expect((await call("payments.list", { orderId }))[0]).to.deep.include({ status: "partially_refunded", refundedAmount: PLN(400) });

			const rest = await call("payments.refund", { orderId, reason: "order cancelled" });
			expect(rest).to.deep.include({ status: "refunded", refundedAmount: PLN(1000) });
			expect(rest.refunds.map((r: any) => r.amount.amount)).to.deep.equal([400, 600]);
			expect((await refusal(call("payments.refund", { orderId, amount: PLN(1) }))).code).to.equal(409);

			const ev = await events.waitFor("payment.refunded", e => e.payload.orderId === orderId && e.payload.fullyRefunded === true);
			expect(ev.payload).to.deep.include({ paymentId: payment.paymentId, refundAmount: PLN(600), totalRefunded: PLN(1000) });
			await settle();
			expect(forOrder("payment.refunded", orderId)).to.have.length(2);
		});

		it("refunding more than was captured at once is refused with 409 and nothing changes", async () => {
			const { orderId } = await authorized(1000);
			await call("payments.capture", { orderId });
			const err = await refusal(call("payments.refund", { orderId, amount: PLN(1001) }));
			expect(err.code).to.equal(409);
			expect(err.type).to.equal("REFUND_EXCEEDS_CAPTURED");
			const [p] = await call("payments.list", { orderId });
			expect(p).to.deep.include({ status: "captured", refundedAmount: PLN(0) });
			expect(p.refunds).to.deep.equal([]);
		});

		it("refunding an order whose payment is unknown answers 404; one only authorized answers 409", async () => {
			const err = await refusal(call("payments.refund", { orderId: randomUUID(), amount: PLN(100) }));
			expect(err.code).to.equal(404);
			expect(err.type).to.equal("NOT_FOUND");
			const { orderId } = await authorized(1000);
			expect((await refusal(call("payments.refund", { orderId }))).type).to.equal("INVALID_TRANSITION");
		});

		it("a refund the provider fails is answered 503 and changes nothing; a retry with the same key succeeds once", async () => {
			const { orderId } = await authorized(1000);
			await call("payments.capture", { orderId });
			provider.failNext = "refund";
			const params = { orderId, amount: PLN(300), idempotencyKey: `${orderId}:refund-1` };
			const err = await refusal(call("payments.refund", params));
			expect(err.code).to.equal(503);
			expect((await call("payments.list", { orderId }))[0]).to.deep.include({ status: "captured", refundedAmount: PLN(0) });
			const ok = await call("payments.refund", params);
			expect(ok.refundedAmount).to.deep.equal(PLN(300));
			expect(await call("payments.refund", params)).to.deep.equal(ok);
			expect((await call("payments.list", { orderId }))[0].refunds).to.have.length(1);
		});

		it("a customer cannot capture, refund or read payments directly", async () => {
			const { orderId } = await authorized(1000);
			const meta = { user: { id: randomUUID(), role: "customer", email: "c@example.com" } };
			expect((await refusal(call("payments.capture", { orderId }, meta))).code).to.equal(403);
			expect((await refusal(call("payments.refund", { orderId }, meta))).code).to.equal(403);
			expect((await refusal(call("payments.list", { orderId }, meta))).code).to.equal(403);
			expect((await call("payments.list", { orderId }))[0].status).to.equal("authorized");
		});
	});

	describe("card data", () => {
		it("no card number appears in any payments table but card_tokens, nor in the outbox", async () => {
			// Every test card has been used above by now; make sure of the common ones here.
			await authorized();
			await refusal(call("payments.authorize", { orderId: randomUUID(), amount: PLN(100), paymentToken: await token(NUMBERS.declined) }));
			const tables: Array<{ table_name: string }> = (
				await db.raw(`SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_type = 'BASE TABLE'`, [SCHEMA])
			).rows;
			expect(tables.map(t => t.table_name)).to.include.members(["card_tokens", "payments", "outbox", "idempotency_keys"]);
			const numbers = Object.values(NUMBERS);
			for (const { table_name } of tables) {
				if (table_name === "card_tokens") continue;
				const dump = JSON.stringify(await db.withSchema(SCHEMA).table(table_name).select("*"));
				for (const n of numbers) expect(dump, `${n} in ${table_name}`).to.not.include(n);
			}
			const outbox = await db.withSchema(SCHEMA).table("outbox").select("envelope");
			expect(outbox.length).to.be.greaterThan(5);
			const published = JSON.stringify(outbox);
			for (const n of numbers) expect(published).to.not.include(n);
			expect(JSON.stringify(events.events)).to.not.match(/4242424242424242|4000000000000002/);
		});
	});
});
