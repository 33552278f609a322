/**
 * BLIK and PayPal: payments that wait for the buyer. The gateway and payments run as separate
 * Moleculer nodes over RabbitMQ; the simulated provider sends its webhooks over HTTP to the
 * gateway, which checks their signature over the raw body.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { refusal, useShop, eventually } from "../support/cluster";
import type { Http } from "../support/http";
import { CountingProvider, gatewayOf, postWebhook, webhookBody } from "../support/payments";
import { signWebhook } from "../../contracts/webhook";

const EVENTS = ["payment.method_selected", "payment.initiated", "payment.authorized", "payment.failed", "payment.voided", "payment.captured", "payment.refunded"];
const SCHEMA = `${process.env.SCHEMA_PREFIX}payments`;
const PLN = (amount: number) => ({ amount, currency: "PLN" });
const SHOP = { returnUrl: "https://shop.example/checkout/paypal-return", cancelUrl: "https://shop.example/checkout/paypal-cancel" };
const settle = () => new Promise(r => setTimeout(r, 700)); // a duplicate event (or a webhook of the 200 ms bank) would have arrived by now

describe("payments: BLIK and PayPal (real gateway, RabbitMQ and Postgres; simulated provider)", function () {
	this.timeout(60_000);
	const shop = useShop([["api"], ["payments"]], EVENTS);
	const call = shop.call;
	let http: Http;
	let provider: CountingProvider;

	before(() => {
		http = gatewayOf(shop.cluster);
		const svc: any = shop.cluster.brokers[1]!.getLocalService("payments");
		provider = new CountingProvider(svc.provider);
		svc.provider = provider;
	});

	const forOrder = (name: string, orderId: string) => shop.events.of(name).filter(e => e.payload.orderId === orderId);
	const paymentOf = (orderId: string) => call("payments.get", { orderId });
	const webhookRows = (transactionId: string) => shop.db.withSchema(SCHEMA).table("webhook_events").where({ transaction_id: transactionId });

	async function blik(code: string, amount = 4999) {
		const orderId = randomUUID();
		const customerId = randomUUID();
		const answer = await call("payments.authorize", { orderId, customerId, amount: PLN(amount), method: "blik", blikCode: code, idempotencyKey: `${orderId}:authorizePayment` });
		return { orderId, customerId, answer };
	}

	async function paypal(amount = 7000) {
		const orderId = randomUUID();
		const answer = await call("payments.authorize", { orderId, amount: PLN(amount), method: "paypal", ...SHOP, idempotencyKey: `${orderId}:authorizePayment` });
		return { orderId, answer };
	}

	/** The browser following PayPal's redirect back to the shop: the answer, not where it leads. */
	const browse = (path: string) => fetch(http.baseUrl + path, { redirect: "manual" });

	describe("choosing the method", () => {
		it("payment.method_selected when a cart's method changes; the same choice again changes nothing; an unknown method is 422", async () => {
			const cartId = randomUUID();
			const customerId = randomUUID();
			expect(await call("payments.selectMethod", { cartId, customerId, method: "blik" })).to.deep.equal({ cartId, method: "blik", changed: true });
			expect((await call("payments.selectMethod", { cartId, customerId, method: "blik" })).changed).to.equal(false);
			expect((await call("payments.selectMethod", { cartId, customerId, method: "paypal" })).changed).to.equal(true);
			const err = await refusal(call("payments.selectMethod", { cartId, customerId, method: "cash" }));
			expect(err.code).to.equal(422);
			expect(err.data[0].field).to.equal("method");
			await eventually(() => shop.events.of("payment.method_selected", cartId).length === 2, 10_000, "two selections");
			await settle();
			expect(shop.events.of("payment.method_selected", cartId).map(e => [e.payload.previousMethod, e.payload.method])).to.deep.equal([[null, "blik"], ["blik", "paypal"]]);
		});
	});

	describe("BLIK", () => {
		it("777123: authorize answers pending; the bank's signed webhook arrives through the gateway and authorizes it", async () => {
			const { orderId, answer } = await blik("777123");
			expect(answer).to.include({ orderId, method: "blik", status: "pending" });
			expect(answer.transactionId).to.be.a("string");
			expect(answer.redirectUrl).to.equal(null);
			const initiated = await shop.events.waitFor("payment.initiated", e => e.payload.orderId === orderId);
			expect(initiated.payload).to.deep.include({ paymentId: answer.paymentId, method: "blik", amount: PLN(4999), transactionId: answer.transactionId });

			const authorized = await shop.events.waitFor("payment.authorized", e => e.payload.orderId === orderId);
			expect(authorized.payload).to.deep.include({ paymentId: answer.paymentId, orderId, method: "blik", amount: PLN(4999), transactionId: answer.transactionId });
			expect(await paymentOf(orderId)).to.deep.include({ status: "authorized", transactionId: answer.transactionId, method: "blik" });
			const rows = await webhookRows(answer.transactionId);
			expect(rows.map(r => [r.status, r.outcome])).to.deep.equal([["approved", "approved"]]);
		});

		it("777000: the bank rejects; the payment fails with payment.failed and is never authorized", async () => {
			const { orderId, answer } = await blik("777000");
			expect(answer.status).to.equal("pending");
			const failed = await shop.events.waitFor("payment.failed", e => e.payload.orderId === orderId);
			expect(failed.payload).to.deep.include({ paymentId: answer.paymentId, method: "blik", type: "PAYMENT_DECLINED", amount: PLN(4999) });
			expect(failed.payload.reason).to.match(/rejected/i);
			expect(await paymentOf(orderId)).to.deep.include({ status: "failed" });
			await settle();
			expect(forOrder("payment.authorized", orderId)).to.have.length(0);
		});

		it("any other code: the bank never answers and the payment stays pending", async () => {
			const { orderId, answer } = await blik("123456");
			await settle();
			expect((await paymentOf(orderId)).status).to.equal("pending");
			expect(await webhookRows(answer.transactionId)).to.have.length(0);
			expect(forOrder("payment.authorized", orderId).concat(forOrder("payment.failed", orderId))).to.have.length(0);
		});

		it("a BLIK payment without a six-digit code is refused with 422 naming blikCode, and nothing is recorded", async () => {
			for (const blikCode of [undefined, "12345", "abcdef", "7771234"]) {
				const orderId = randomUUID();
				const err = await refusal(call("payments.authorize", { orderId, amount: PLN(100), method: "blik", blikCode }));
				expect(err.code, String(blikCode)).to.equal(422);
				expect(err.data.map((d: any) => d.field)).to.include("blikCode");
				expect((await refusal(paymentOf(orderId))).code).to.equal(404);
			}
		});

		it("voiding a pending BLIK payment cancels it at the provider: voided, payment.voided, nothing left to capture", async () => {
			const { orderId, answer } = await blik("123456");
			const before = provider.calls.cancel!;
			const voided = await call("payments.void", { orderId, reason: "Payment deadline passed", idempotencyKey: `${orderId}:authorizePayment:compensate` });
			expect(voided).to.deep.include({ paymentId: answer.paymentId, status: "voided", voidReason: "Payment deadline passed" });
			expect(provider.calls.cancel! - before).to.equal(1);
			const ev = await shop.events.waitFor("payment.voided", e => e.payload.orderId === orderId);
			expect(ev.payload).to.deep.include({ paymentId: answer.paymentId, wasPending: true, reason: "Payment deadline passed" });
			expect((await refusal(call("payments.capture", { orderId }))).code).to.equal(409);
		});
	});

	describe("the provider's webhook at the gateway", () => {
		it("without a signature: 401, logged, and the payment stays pending", async () => {
			const { orderId, answer } = await blik("123456");
			const api: any = shop.cluster.brokers[0]!.getLocalService("api");
			const logged: string[] = [];
			const warn = api.logger.warn;
			api.logger.warn = (...args: unknown[]) => (logged.push(args.map(String).join(" ")), warn.apply(api.logger, args));
			const res = await postWebhook(http, webhookBody(answer.transactionId, "approved"), { signature: null }).finally(() => (api.logger.warn = warn));
			expect(res.status).to.equal(401);
			expect(res.body).to.include({ type: "INVALID_SIGNATURE" });
			expect(logged.filter(l => /webhook/i.test(l) && /no signature/.test(l))).to.have.length(1);
			expect((await paymentOf(orderId)).status).to.equal("pending");
			expect(await webhookRows(answer.transactionId)).to.have.length(0);
		});

		it("with a wrong signature — another secret, another body, a malformed header — 401 and nothing changes", async () => {
			const { orderId, answer } = await blik("123456");
			const body = webhookBody(answer.transactionId, "approved");
			const raw = JSON.stringify(body);
			const tampered = JSON.stringify({ ...body, status: "rejected" });
			for (const signature of [signWebhook(raw, "not-the-secret"), signWebhook(tampered, process.env.WEBHOOK_SECRET!), "sha256=zz", signWebhook(raw, process.env.WEBHOOK_SECRET!).slice(7)]) {
				const res = await postWebhook(http, body, { signature });
				expect(res.status, signature).to.equal(401);
			}
			// The signature covers the raw bytes: the same JSON with other spacing is another body.
			const spaced = await postWebhook(http, body, { raw: JSON.stringify(body, null, 2), signature: signWebhook(raw, process.env.WEBHOOK_SECRET!) });
			expect(spaced.status).to.equal(401);
			expect((await paymentOf(orderId)).status).to.equal("pending");
			expect(await webhookRows(answer.transactionId)).to.have.length(0);
			await settle();
			expect(forOrder("payment.authorized", orderId)).to.have.length(0);
		});

		it("a good signature authorizes; the same eventId again is 200 and changes nothing; a later contrary event is ignored", async () => {
			const { orderId, answer } = await blik("123456");
			const body = webhookBody(answer.transactionId, "approved");
			const first = await postWebhook(http, body);
			expect(first.status).to.equal(200);
			expect(first.body).to.include({ duplicate: false, outcome: "approved", paymentId: answer.paymentId });
			const again = await postWebhook(http, body);
			expect(again.status).to.equal(200);
			expect(again.body).to.include({ duplicate: true, outcome: "approved" });
			const contrary = await postWebhook(http, webhookBody(answer.transactionId, "rejected"));
			expect(contrary.status).to.equal(200);
			expect(contrary.body.outcome).to.equal("ignored_authorized");
			expect((await paymentOf(orderId)).status).to.equal("authorized");
			await shop.events.waitFor("payment.authorized", e => e.payload.orderId === orderId);
			await settle();
			expect(forOrder("payment.authorized", orderId)).to.have.length(1);
			expect(forOrder("payment.failed", orderId)).to.have.length(0);
		});

		it("an approval after the payment was given up is voided at the provider and recorded — never authorized", async () => {
			const { orderId, answer } = await blik("123456");
			await call("payments.void", { orderId, reason: "Payment deadline passed" });
			const voidsBefore = provider.calls.void!;
			const late = await postWebhook(http, webhookBody(answer.transactionId, "approved"));
			expect(late.status).to.equal(200);
			expect(late.body.outcome).to.equal("late_approval_voided");
			expect(provider.calls.void! - voidsBefore, "the late authorization is released at the provider").to.equal(1);
			expect((await paymentOf(orderId)).status).to.equal("voided");
			const ev = await shop.events.waitFor("payment.voided", e => e.payload.orderId === orderId && e.payload.lateApproval === true);
			expect(ev.payload).to.deep.include({ paymentId: answer.paymentId, transactionId: answer.transactionId });
			// A late rejection changes nothing either.
			expect((await postWebhook(http, webhookBody(answer.transactionId, "rejected"))).body.outcome).to.equal("ignored_voided");
			await settle();
			expect(forOrder("payment.authorized", orderId)).to.have.length(0);
			expect(forOrder("payment.failed", orderId)).to.have.length(0);
			expect((await refusal(call("payments.capture", { orderId }))).code).to.equal(409);
		});

		it("an approval racing the saga's void never leaves an authorized payment behind", async () => {
			const voidUntilDone = async (orderId: string) => {
				for (let i = 0; ; i++) {
					try {
						return await call("payments.void", { orderId, reason: "Payment deadline passed", idempotencyKey: `${orderId}:authorizePayment:compensate` });
					} catch (err: any) {
						if (err.code !== 503 || i > 20) throw err; // the saga retries a temporary failure
					}
				}
			};
			const approveUntilTaken = async (transactionId: string) => {
				const body = webhookBody(transactionId, "approved");
				for (let i = 0; ; i++) {
					const res = await postWebhook(http, body); // the provider sends again while the gateway answers 5xx
					if (res.status === 200 || i > 20) return res;
				}
			};
			const payments = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map(() => blik("123456")));
			await Promise.all(payments.flatMap(p => [voidUntilDone(p.orderId), approveUntilTaken(p.answer.transactionId)]));
			for (const { orderId } of payments) {
				expect((await paymentOf(orderId)).status, orderId).to.equal("voided");
				await eventually(() => forOrder("payment.voided", orderId).length > 0, 10_000, "payment.voided");
				// Authorized first and then voided, or voided first and the approval released: never authorized at the end.
				const authorized = forOrder("payment.authorized", orderId).length;
				const voided = forOrder("payment.voided", orderId);
				expect(authorized, orderId).to.be.at.most(1);
				if (authorized === 0) await eventually(() => forOrder("payment.voided", orderId).some(e => e.payload.lateApproval === true), 10_000, "the late approval voided");
				else expect(voided.every(e => !e.payload.lateApproval)).to.equal(true);
			}
		});

		it("a webhook about an unknown transaction is 404, a malformed one 422; neither is recorded", async () => {
			const unknown = await postWebhook(http, webhookBody("sim_blik_nope", "approved"));
			expect(unknown.status).to.equal(404);
			const malformed = await postWebhook(http, { eventId: randomUUID(), transactionId: "sim_blik_x", status: "maybe" });
			expect(malformed.status).to.equal(422);
			expect(await webhookRows("sim_blik_nope")).to.have.length(0);
		});
	});

	describe("PayPal", () => {
		it("authorize answers a redirectUrl; the buyer's return approves and is sent on to the shop's returnUrl", async () => {
			const { orderId, answer } = await paypal();
			expect(answer).to.include({ status: "pending", method: "paypal" });
			expect(answer.redirectUrl).to.match(/^https:\/\/.+\?token=/);
			expect(new URL(answer.redirectUrl).searchParams.get("token")).to.equal(answer.transactionId);

			const back = await browse(`/api/payments/paypal/return?token=${encodeURIComponent(answer.transactionId)}`);
			expect(back.status).to.equal(302);
			expect(back.headers.get("location")).to.equal(SHOP.returnUrl);
			expect((await paymentOf(orderId)).status).to.equal("authorized");
			const ev = await shop.events.waitFor("payment.authorized", e => e.payload.orderId === orderId);
			expect(ev.payload).to.deep.include({ method: "paypal", transactionId: answer.transactionId });
			// The browser reloading the page changes nothing.
			expect((await browse(`/api/payments/paypal/return?token=${encodeURIComponent(answer.transactionId)}`)).status).to.equal(302);
			await settle();
			expect(forOrder("payment.authorized", orderId)).to.have.length(1);
		});

		it("the buyer's cancel fails the payment and is sent on to the shop's cancelUrl", async () => {
			const { orderId, answer } = await paypal();
			const back = await browse(`/api/payments/paypal/cancel?token=${encodeURIComponent(answer.transactionId)}`);
			expect(back.status).to.equal(302);
			expect(back.headers.get("location")).to.equal(SHOP.cancelUrl);
			expect((await paymentOf(orderId)).status).to.equal("failed");
			const ev = await shop.events.waitFor("payment.failed", e => e.payload.orderId === orderId);
			expect(ev.payload).to.deep.include({ method: "paypal", type: "PAYMENT_DECLINED" });
		});

		it("a return after the payment was given up is voided and sends the buyer to cancelUrl", async () => {
			const { orderId, answer } = await paypal();
			await call("payments.void", { orderId, reason: "Payment deadline passed" });
			const back = await browse(`/api/payments/paypal/return?token=${encodeURIComponent(answer.transactionId)}`);
			expect(back.headers.get("location")).to.equal(SHOP.cancelUrl);
			expect((await paymentOf(orderId)).status).to.equal("voided");
			await shop.events.waitFor("payment.voided", e => e.payload.orderId === orderId && e.payload.lateApproval === true);
		});

		it("an unknown token is 404", async () => {
			expect((await browse("/api/payments/paypal/return?token=sim_pp_unknown")).status).to.equal(404);
			expect((await browse("/api/payments/paypal/cancel")).status).to.equal(422);
		});

		it("initiatePayPal (InitiatePayPal) answers the redirect; without return and cancel URLs it is refused with 422", async () => {
			const orderId = randomUUID();
			const started = await call("payments.initiatePayPal", { orderId, amount: PLN(1500), ...SHOP });
			expect(started).to.include({ method: "paypal", status: "pending" });
			expect(started.redirectUrl).to.be.a("string");
			const missing = await refusal(call("payments.initiatePayPal", { orderId: randomUUID(), amount: PLN(1500) }));
			expect(missing.code).to.equal(422);
			expect(missing.data.map((d: any) => d.field)).to.include.members(["returnUrl", "cancelUrl"]);
			const notWeb = await refusal(call("payments.authorize", { orderId: randomUUID(), amount: PLN(1500), method: "paypal", returnUrl: "javascript:alert(1)", cancelUrl: SHOP.cancelUrl }));
			expect(notWeb.code).to.equal(422);
		});

		it("when PayPal does not answer: 503, worth a retry, and nothing is recorded", async () => {
			const orderId = randomUUID();
			provider.failNext = "startPayPal";
			const err = await refusal(call("payments.initiatePayPal", { orderId, amount: PLN(1500), ...SHOP, idempotencyKey: `${orderId}:pp` }));
			expect(err.code).to.equal(503);
			expect(err.retryable).to.equal(true);
			expect(await call("payments.list", { orderId })).to.deep.equal([]);
			const retried = await call("payments.initiatePayPal", { orderId, amount: PLN(1500), ...SHOP, idempotencyKey: `${orderId}:pp` });
			expect(retried.status).to.equal("pending");
			await settle();
			expect(forOrder("payment.initiated", orderId)).to.have.length(1);
		});
	});

	describe("after a BLIK approval: capture, refunds", () => {
		it("captures, refunds in parts, and never refunds more than captured", async () => {
			const { orderId, customerId } = await blik("777123", 3000);
			await eventually(async () => (await paymentOf(orderId)).status === "authorized", 10_000, "the BLIK approval");
			expect((await refusal(call("payments.refund", { orderId, amount: PLN(100), reason: "before capture" }))).type).to.equal("INVALID_TRANSITION");
			const captured = await call("payments.capture", { orderId, idempotencyKey: `${orderId}:ship:capturePayment` });
			expect(captured).to.deep.include({ status: "captured", captured: PLN(3000), customerId });
			expect(await call("payments.capture", { orderId, idempotencyKey: `${orderId}:ship:capturePayment` })).to.deep.equal(captured);
			const part = await call("payments.refund", { orderId, amount: PLN(1000), reason: "one item back" });
			expect(part).to.deep.include({ status: "partially_refunded", refunded: PLN(1000) });
			const tooMuch = await refusal(call("payments.refund", { orderId, amount: PLN(2001), reason: "too much" }));
			expect(tooMuch.code).to.equal(409);
			expect(tooMuch.type).to.equal("REFUND_EXCEEDS_CAPTURED");
			expect(await paymentOf(orderId)).to.deep.include({ status: "partially_refunded", refunded: PLN(1000) });
			expect(await call("payments.refund", { orderId, reason: "the rest" })).to.deep.include({ status: "refunded", refunded: PLN(3000) });
		});
	});
});
