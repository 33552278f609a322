import { expect } from "chai";
import { brandOf, Card, checkCard, isExpired, luhnValid } from "../../services/payments/card";
import { checkRefund } from "../../services/payments/payment";
import { SimulatedCardProvider, TEST_CARDS } from "../../services/payments/provider";

const NOW = new Date("2026-05-15T12:00:00Z");
const PLN = (amount: number) => ({ amount, currency: "PLN" });
const card = (number: string, expYear = 2030, expMonth = 12): Card => ({ number, expMonth, expYear, brand: brandOf(number) });

describe("card numbers", () => {
	it("the Luhn check accepts the test cards and refuses a changed digit", () => {
		for (const n of Object.values(TEST_CARDS)) expect(luhnValid(n), n).to.equal(true);
		expect(luhnValid("4242424242424241")).to.equal(false);
		expect(luhnValid("42424242a2424242")).to.equal(false);
	});

	it("brands come from the number's prefix; a number starting with 9 has no brand we take", () => {
		expect(brandOf("4242424242424242")).to.equal("visa");
		expect(brandOf("5555555555554444")).to.equal("mastercard");
		expect(brandOf("2223003122003222")).to.equal("mastercard");
		expect(brandOf("378282246310005")).to.equal("amex");
		expect(brandOf("6011111111111117")).to.equal("discover");
		expect(brandOf("9000000000000001")).to.equal(null);
	});

	it("a card is good through the last day of its expiry month", () => {
		expect(isExpired(5, 2026, NOW)).to.equal(false);
		expect(isExpired(4, 2026, NOW)).to.equal(true);
		expect(isExpired(1, 2027, NOW)).to.equal(false);
		expect(isExpired(12, 2025, NOW)).to.equal(true);
	});

	it("checking a card names what is wrong without repeating the number", () => {
		const short = checkCard({ cardNumber: "424242424242", expMonth: 12, expYear: 2030 }, NOW);
		const luhn = checkCard({ cardNumber: "4242 4242 4242 4241", expMonth: 12, expYear: 2030 }, NOW);
		const long = checkCard({ cardNumber: "42424242424242424242", expMonth: 12, expYear: 2030 }, NOW);
		for (const c of [short, luhn, long]) {
			expect(c.ok).to.equal(false);
			if (!c.ok) {
				expect(c.problem).to.equal("invalid_number");
				expect(c.message).to.not.match(/4242/);
			}
		}
		expect(checkCard({ cardNumber: "9000000000000001", expMonth: 12, expYear: 2030 }, NOW)).to.include({ ok: false, problem: "unsupported" });
		expect(checkCard({ cardNumber: "4242424242424242", expMonth: 1, expYear: 2026 }, NOW)).to.include({ ok: false, problem: "expired" });
		expect(checkCard({ cardNumber: "4242-4242-4242-4242", expMonth: 12, expYear: 2030 }, NOW)).to.deep.equal({ ok: true, number: "4242424242424242", brand: "visa", last4: "4242" });
	});
});

describe("simulated card provider", () => {
	const provider = new SimulatedCardProvider(() => NOW);

	it("4242 4242 4242 4242 authorizes", async () => {
		const r = await provider.authorize(card(TEST_CARDS.ok), PLN(1000));
		expect(r.ok).to.equal(true);
		if (r.ok) expect(r.providerRef).to.match(/^sim_auth_/);
	});

	it("4000 0000 0000 0002 is declined", async () => {
		expect(await provider.authorize(card(TEST_CARDS.declined), PLN(1000))).to.deep.include({ ok: false, type: "PAYMENT_DECLINED" });
	});

	it("4000 0000 0000 9995 fails for insufficient funds", async () => {
		expect(await provider.authorize(card(TEST_CARDS.insufficientFunds), PLN(1000))).to.deep.include({ ok: false, type: "INSUFFICIENT_FUNDS" });
	});

	it("4000 0000 0000 0119 gets no answer from the provider: a temporary failure, not a refusal", async () => {
		expect(await provider.authorize(card(TEST_CARDS.gatewayError), PLN(1000))).to.deep.include({ ok: false, type: "PROVIDER_UNAVAILABLE" });
	});

	it("any other Luhn-valid number of a brand we take authorizes", async () => {
		for (const n of ["5555555555554444", "378282246310005", "6011111111111117", "4111111111111111"]) {
			expect((await provider.authorize(card(n), PLN(1))).ok, n).to.equal(true);
		}
	});

	it("a brand we don't take is refused as UNSUPPORTED_CARD", async () => {
		expect(await provider.authorize(card("9000000000000001"), PLN(1000))).to.deep.include({ ok: false, type: "UNSUPPORTED_CARD" });
	});

	it("an expired card is declined with a message that says it expired", async () => {
		const r = await provider.authorize(card(TEST_CARDS.ok, 2026, 4), PLN(1000));
		expect(r).to.deep.include({ ok: false, type: "PAYMENT_DECLINED" });
		if (!r.ok) expect(r.message).to.match(/expired/);
	});

	it("an authorization sent again with the same idempotency key answers the same reference", async () => {
		const a = await provider.authorize(card(TEST_CARDS.ok), PLN(1000), { idempotencyKey: "k1" });
		const b = await provider.authorize(card(TEST_CARDS.ok), PLN(1000), { idempotencyKey: "k1" });
		const c = await provider.authorize(card(TEST_CARDS.ok), PLN(1000), { idempotencyKey: "k2" });
		if (!a.ok || !b.ok || !c.ok) throw new Error("expected authorizations");
		expect(a.providerRef).to.equal(b.providerRef);
		expect(c.providerRef).to.not.equal(a.providerRef);
	});

	it("void, capture and refund work on its own authorizations and refuse unknown ones", async () => {
		const a = await provider.authorize(card(TEST_CARDS.ok), PLN(1000));
		if (!a.ok) throw new Error("expected an authorization");
		expect((await provider.capture(a.providerRef, PLN(1000))).ok).to.equal(true);
		expect((await provider.refund(a.providerRef, PLN(400))).ok).to.equal(true);
		expect((await provider.void(a.providerRef)).ok).to.equal(true);
		expect(await provider.void("nope")).to.deep.include({ ok: false, type: "PROVIDER_UNAVAILABLE" });
		expect(await provider.refund("nope", PLN(1))).to.deep.include({ ok: false });
	});
});

describe("refund rules", () => {
	it("no amount refunds all that remains; a part leaves the payment partially refunded", () => {
		expect(checkRefund(1000, 0, "PLN")).to.deep.equal({ ok: true, amount: PLN(1000), refundedAfter: 1000, status: "refunded" });
		expect(checkRefund(1000, 0, "PLN", PLN(300))).to.deep.equal({ ok: true, amount: PLN(300), refundedAfter: 300, status: "partially_refunded" });
		expect(checkRefund(1000, 300, "PLN", PLN(700))).to.deep.include({ ok: true, status: "refunded" });
	});

	it("a refund never exceeds what was captured, nor what remains after earlier refunds", () => {
		expect(checkRefund(1000, 0, "PLN", PLN(1001))).to.deep.include({ ok: false, reason: "exceeds", remaining: 1000 });
		expect(checkRefund(1000, 800, "PLN", PLN(300))).to.deep.include({ ok: false, reason: "exceeds", remaining: 200 });
		expect(checkRefund(1000, 1000, "PLN")).to.deep.include({ ok: false, reason: "exceeds", remaining: 0 });
	});

	it("a refund in another currency is refused", () => {
		expect(checkRefund(1000, 0, "PLN", { amount: 100, currency: "EUR" })).to.deep.include({ ok: false, reason: "currency" });
	});
});
