import { expect } from "chai";
import { canTransition, decide, decideFailure, failureStatus, formatOrderNumber, ORDER_STATUSES, OrderStatus } from "../../services/orders/status";
import { priceLines } from "../../services/orders/order";

/** Every move the lifecycle allows; any pair not listed here must be refused. */
const ALLOWED: Array<[OrderStatus, OrderStatus]> = [
	["pending", "awaiting_payment"],
	["pending", "confirmed"],
	["pending", "cancelled"],
	["pending", "payment_failed"],
	["awaiting_payment", "confirmed"],
	["awaiting_payment", "cancelled"],
	["awaiting_payment", "payment_failed"],
	["confirmed", "shipped"],
	["confirmed", "cancelled"],
	["shipped", "delivered"]
];

describe("order status lifecycle", () => {
	for (const from of ORDER_STATUSES) {
		for (const to of ORDER_STATUSES) {
			const allowed = ALLOWED.some(([f, t]) => f === from && t === to);
			const what = from === to ? "already there (answered as it is)" : allowed ? "allowed" : "refused";
			it(`${from} → ${to} is ${what}`, () => {
				expect(canTransition(from, to)).to.equal(allowed);
				expect(decide(from, to)).to.equal(from === to ? "noop" : allowed ? "apply" : "refuse");
			});
		}
	}

	it("delivered, cancelled and payment_failed are final: nothing follows them", () => {
		for (const end of ["delivered", "cancelled", "payment_failed"] as const) {
			for (const to of ORDER_STATUSES) expect(canTransition(end, to), `${end} → ${to}`).to.equal(false);
		}
	});

	it("a payment refusal fails the order as payment_failed, anything else cancels it", () => {
		expect(failureStatus("PAYMENT_DECLINED")).to.equal("payment_failed");
		expect(failureStatus("INSUFFICIENT_FUNDS")).to.equal("payment_failed");
		expect(failureStatus("UNSUPPORTED_CARD")).to.equal("payment_failed");
		expect(failureStatus("DEADLINE_PASSED"), "BLIK / PayPal never completed").to.equal("payment_failed");
		expect(failureStatus("OUT_OF_STOCK")).to.equal("cancelled");
		expect(failureStatus(undefined)).to.equal("cancelled");
		expect(failureStatus(null)).to.equal("cancelled");
	});

	it("failing an order applies only before confirmation; an ended order is left as it is; a confirmed one is refused", () => {
		expect(decideFailure("pending", "PAYMENT_DECLINED")).to.deep.equal({ decision: "apply", to: "payment_failed" });
		expect(decideFailure("awaiting_payment", "OUT_OF_STOCK")).to.deep.equal({ decision: "apply", to: "cancelled" });
		expect(decideFailure("cancelled", "PAYMENT_DECLINED")).to.deep.equal({ decision: "noop", to: "cancelled" });
		expect(decideFailure("payment_failed", "OUT_OF_STOCK")).to.deep.equal({ decision: "noop", to: "payment_failed" });
		for (const s of ["confirmed", "shipped", "delivered"] as const) expect(decideFailure(s, "PAYMENT_DECLINED").decision, s).to.equal("refuse");
	});

	it("order numbers read SC-<year>-<six digits> and grow past a million without being cut", () => {
		expect(formatOrderNumber(2026, 42)).to.equal("SC-2026-000042");
		expect(formatOrderNumber(2026, 1_234_567)).to.equal("SC-2026-1234567");
	});
});

describe("order lines snapshot", () => {
	const line = (amount: number, quantity: number, currency = "PLN") => ({ productId: "p", sku: "s", name: "n", quantity, unitPrice: { amount, currency } });

	it("each line's total is its price times its quantity and the order total their sum", () => {
		const priced = priceLines([line(1250, 2), line(999, 3)]);
		if (!priced.ok) throw new Error(priced.message);
		expect(priced.lines.map(l => l.lineTotal.amount)).to.deep.equal([2500, 2997]);
		expect(priced.total).to.deep.equal({ amount: 5497, currency: "PLN" });
	});

	it("lines in two currencies are refused", () => {
		const priced = priceLines([line(1000, 1, "PLN"), line(1000, 1, "EUR")]);
		expect(priced.ok).to.equal(false);
	});
});
