/** Shipping quotes without a database or a clock: price, free-over, express, the delivery window. */
import { expect } from "chai";
import type { ShippingMethod } from "../../contracts/shipping";
import { addDays, quote } from "../../services/shipping/methods";

const PLN = (amount: number) => ({ amount, currency: "PLN" });
const courier: ShippingMethod = {
	id: "00000000-0000-4000-8000-000000000001", name: "Courier", carrier: "DPD", price: PLN(1999), freeOver: PLN(30000),
	countries: ["PL", "DE"], deliveryDays: { min: 1, max: 3 }, expressFee: PLN(1500), active: true
};
const TODAY = "2030-12-30";

describe("shipping rules", () => {
	it("counts days across month and year ends, and leap days", () => {
		expect(addDays("2030-12-30", 3)).to.equal("2031-01-02");
		expect(addDays("2028-02-28", 1)).to.equal("2028-02-29");
		expect(addDays("2030-03-01", -1)).to.equal("2030-02-28");
	});

	it("the window's first and last days are in it, the days around it are not", () => {
		const ok = (deliveryDate?: string) => quote(courier, { country: "PL", cartTotal: PLN(100), deliveryDate }, TODAY);
		expect(ok()).to.deep.include({ ok: true });
		expect((ok() as any).quote.deliveryDate).to.equal("2030-12-31");
		expect((ok("2030-12-31") as any).ok).to.equal(true);
		expect((ok("2031-01-02") as any).ok).to.equal(true);
		expect((ok("2030-12-30") as any).refusal.field).to.equal("deliveryDate");
		expect((ok("2031-01-03") as any).refusal.field).to.equal("deliveryDate");
		expect((ok("2030-12-29") as any).refusal.message).to.match(/in the past/);
	});

	it("free from the threshold on; express adds its fee even then", () => {
		const q = (amount: number, express = false) => (quote(courier, { country: "DE", cartTotal: PLN(amount), express }, TODAY) as any).quote;
		expect(q(29999)).to.deep.include({ price: PLN(1999), free: false });
		expect(q(30000)).to.deep.include({ price: PLN(0), free: true });
		expect(q(29999, true)).to.deep.include({ price: PLN(3499), expressFee: PLN(1500) });
		expect(q(30000, true)).to.deep.include({ price: PLN(1500), basePrice: PLN(0) });
	});

	it("refuses a country not served, another currency, express without a fee, a retired method", () => {
		const refusal = (m: ShippingMethod, req: any) => (quote(m, { country: "PL", cartTotal: PLN(1), ...req }, TODAY) as any).refusal?.field;
		expect(refusal(courier, { country: "FR" })).to.equal("country");
		expect(refusal(courier, { cartTotal: { amount: 1, currency: "EUR" } })).to.equal("cartTotal.currency");
		expect(refusal({ ...courier, expressFee: null }, { express: true })).to.equal("express");
		expect(refusal({ ...courier, active: false }, {})).to.equal("methodId");
		expect(refusal({ ...courier, freeOver: null }, { cartTotal: PLN(10_000_000) })).to.equal(undefined);
	});
});
