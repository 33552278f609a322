/** The promotion combining rule, without a database: best automatic + at most one code, in scope, never below zero. */
import { expect } from "chai";
import fc from "fast-check";
import { randomUUID } from "node:crypto";
import type { Promotion, PromotionLine } from "../../contracts/promotions";
import { evaluate } from "../../services/promotions/rules";

const NOW = new Date("2030-06-15T12:00:00Z");
const A = "00000000-0000-4000-8000-00000000000a";
const B = "00000000-0000-4000-8000-00000000000b";
const C = "00000000-0000-4000-8000-00000000000c";
const SHOES = "00000000-0000-4000-8000-0000000000c1";

let seq = 0;
function promo(p: Partial<Promotion>): Promotion {
	seq++;
	return {
		id: randomUUID(), name: `P${seq}`, code: null, kind: "percentage", value: 10, currency: "PLN", minCartTotal: null, productIds: [], categoryIds: [],
		validFrom: null, validTo: null, usageLimit: null, perCustomerLimit: null, uses: 0, active: true,
		createdAt: new Date(Date.UTC(2030, 0, 1, 0, 0, seq)).toISOString(), updatedAt: NOW.toISOString(), ...p
	};
}
const line = (productId: string, quantity: number, unit: number, categoryId: string | null = null): PromotionLine => ({ productId, categoryId, quantity, unitPrice: { amount: unit, currency: "PLN" } });
const cart = [line(A, 2, 5000), line(B, 1, 3000, SHOES), line(C, 3, 999)]; // 10000 + 3000 + 2997 = 15997

describe("promotion rules", () => {
	it("no promotions: nothing off", () => {
		const r = evaluate([], null, cart, "PLN", NOW);
		expect(r).to.deep.include({ subtotal: { amount: 15997, currency: "PLN" }, discount: { amount: 0, currency: "PLN" }, total: { amount: 15997, currency: "PLN" }, promotions: [] });
		expect(r.lineDiscounts.map(l => l.amount)).to.deep.equal([0, 0, 0]);
		expect(r).not.to.have.property("codeStatus");
	});

	it("a percentage is rounded half up and split across the lines so they sum exactly", () => {
		const r = evaluate([promo({ value: 10 })], null, cart, "PLN", NOW);
		expect(r.discount.amount).to.equal(1600); // 1599.7
		expect(r.lineDiscounts.map(l => l.amount)).to.deep.equal([1000, 300, 300]); // 1000, 300, 299.7 → the leftover unit to the largest remainder
		expect(r.total.amount).to.equal(14397);
	});

	it("only the best automatic promotion counts; a tie goes to the older one", () => {
		const small = promo({ kind: "fixed", value: 500 });
		const big = promo({ value: 20 });
		const r = evaluate([small, big], null, cart, "PLN", NOW);
		expect(r.promotions.map(p => p.promotionId)).to.deep.equal([big.id]);
		const older = promo({ kind: "fixed", value: 700 });
		const younger = promo({ kind: "fixed", value: 700 });
		expect(evaluate([younger, older], null, cart, "PLN", NOW).promotions.map(p => p.promotionId)).to.deep.equal([older.id]);
	});

	it("scope: products or categories named; lines outside it keep their price", () => {
		const r = evaluate([promo({ value: 50, productIds: [A], categoryIds: [SHOES] })], null, cart, "PLN", NOW);
		expect(r.lineDiscounts.map(l => l.amount)).to.deep.equal([5000, 1500, 0]);
		const none = evaluate([promo({ value: 50, productIds: [randomUUID()] })], null, cart, "PLN", NOW);
		expect(none.promotions).to.deep.equal([]);
	});

	it("the code comes on top, taken from what is left after the automatic one", () => {
		const auto = promo({ value: 10 });
		const code = promo({ code: "EXTRA", kind: "fixed", value: 2000 });
		const r = evaluate([auto], { promotion: code, customerUses: 0 }, cart, "PLN", NOW);
		expect(r.codeStatus).to.equal("applied");
		expect(r.promotions.map(p => [p.code ?? null, p.discount.amount])).to.deep.equal([[null, 1600], ["EXTRA", 2000]]);
		expect(r.discount.amount).to.equal(3600);
		expect(r.lineDiscounts.reduce((a, l) => a + l.amount, 0)).to.equal(3600);
	});

	it("a fixed amount is capped at its scope lines' amount; a cart never goes below zero", () => {
		const r = evaluate([promo({ kind: "fixed", value: 100_000 })], { promotion: promo({ code: "MORE", value: 100 }), customerUses: 0 }, cart, "PLN", NOW);
		expect(r.discount.amount).to.equal(15997);
		expect(r.total.amount).to.equal(0);
		expect(r.codeStatus).to.equal("not_applicable"); // nothing left to take off
		const scoped = evaluate([promo({ kind: "fixed", value: 100_000, productIds: [C] })], null, cart, "PLN", NOW);
		expect(scoped.lineDiscounts.map(l => l.amount)).to.deep.equal([0, 0, 2997]);
	});

	it("minimum cart total, currency and validity decide whether a promotion applies", () => {
		expect(evaluate([promo({ minCartTotal: { amount: 15998, currency: "PLN" } })], null, cart, "PLN", NOW).promotions).to.have.length(0);
		expect(evaluate([promo({ minCartTotal: { amount: 15997, currency: "PLN" } })], null, cart, "PLN", NOW).promotions).to.have.length(1);
		expect(evaluate([promo({ kind: "fixed", value: 100, currency: "EUR" })], null, cart, "PLN", NOW).promotions).to.have.length(0);
		const eur = cart.map(l => ({ ...l, unitPrice: { ...l.unitPrice, currency: "EUR" } }));
		expect(evaluate([promo({ value: 10 })], null, eur, "EUR", NOW).discount).to.deep.equal({ amount: 1600, currency: "EUR" });
		expect(evaluate([promo({ validTo: "2030-06-15T11:59:59Z" })], null, cart, "PLN", NOW).promotions).to.have.length(0);
		expect(evaluate([promo({ validFrom: "2030-06-15T12:00:01Z" })], null, cart, "PLN", NOW).promotions).to.have.length(0);
		expect(evaluate([promo({ active: false })], null, cart, "PLN", NOW).promotions).to.have.length(0);
	});

	it("a code's status: unknown, expired, not yet valid, used up (in all or by this customer), not applicable", () => {
		const status = (p: Promotion | null, customerUses = 0) => evaluate([], { promotion: p, customerUses }, cart, "PLN", NOW).codeStatus;
		expect(status(null)).to.equal("unknown");
		expect(status(promo({ code: "X", validTo: "2030-01-01T00:00:00Z" }))).to.equal("expired");
		expect(status(promo({ code: "X", active: false }))).to.equal("expired");
		expect(status(promo({ code: "X", validFrom: "2031-01-01T00:00:00Z" }))).to.equal("not_applicable");
		expect(status(promo({ code: "X", usageLimit: 5, uses: 5 }))).to.equal("used_up");
		expect(status(promo({ code: "X", usageLimit: 5, uses: 4 }))).to.equal("applied");
		expect(status(promo({ code: "X", perCustomerLimit: 1 }), 1)).to.equal("used_up");
		expect(status(promo({ code: "X", minCartTotal: { amount: 20000, currency: "PLN" } }))).to.equal("not_applicable");
	});

	it("property: the discount never exceeds the lines, every line stays ≥ 0, and line discounts sum to the total discount", () => {
		const arbPromo = fc.record({
			kind: fc.constantFrom("percentage" as const, "fixed" as const),
			value: fc.integer({ min: 1, max: 100_000 }),
			productIds: fc.subarray([A, B, C]),
			coded: fc.boolean()
		}).map(p => promo({ ...p, value: p.kind === "percentage" ? Math.min(p.value, 100) : p.value, code: p.coded ? "C" : null }));
		const arbLines = fc.array(fc.record({ productId: fc.constantFrom(A, B, C), quantity: fc.integer({ min: 1, max: 50 }), unit: fc.integer({ min: 0, max: 1_000_000 }) }), { maxLength: 8 })
			.map(ls => ls.map(l => line(l.productId, l.quantity, l.unit)));
		fc.assert(
			fc.property(fc.array(arbPromo, { maxLength: 5 }), fc.option(arbPromo, { nil: undefined }), arbLines, (autos, code, lines) => {
				const r = evaluate(autos, code ? { promotion: { ...code, code: "C" }, customerUses: 0 } : null, lines, "PLN", NOW);
				const amounts = lines.map(l => l.quantity * l.unitPrice.amount);
				expect(r.discount.amount).to.be.at.most(r.subtotal.amount);
				r.lineDiscounts.forEach((d, i) => expect(d.amount).to.be.within(0, amounts[i]!));
				expect(r.lineDiscounts.reduce((a, d) => a + d.amount, 0)).to.equal(r.discount.amount);
				expect(r.promotions.reduce((a, p) => a + p.discount.amount, 0)).to.equal(r.discount.amount);
				expect(r.promotions.filter(p => !p.code).length).to.be.at.most(1);
			}),
			{ numRuns: 300 }
		);
	});
});
