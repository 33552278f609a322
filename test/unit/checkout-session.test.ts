import { expect } from "chai";
import { computeTotals, missingForPlace, paymentDetailsFor, sameTotals } from "../../services/checkout/session";

describe("checkout session rules", () => {
	it("grand total is goods minus discount plus shipping plus services, in minor units", () => {
		expect(computeTotals({ cartTotal: 20000, discount: 2000, shipping: 3500, services: 500, currency: "PLN" })).to.deep.equal({
			cartTotal: 20000, promotionDiscount: 2000, shippingTotal: 3500, servicesTotal: 500, grandTotal: 22000, currency: "PLN"
		});
	});

	it("a discount never exceeds the goods: shipping and services are still paid", () => {
		const t = computeTotals({ cartTotal: 1000, discount: 5000, shipping: 999, services: 0, currency: "PLN" });
		expect(t.promotionDiscount).to.equal(1000);
		expect(t.grandTotal).to.equal(999);
	});

	it("totals_updated is only worth sending when some total differs", () => {
		const a = computeTotals({ cartTotal: 100, discount: 0, shipping: 0, services: 0, currency: "PLN" });
		expect(sameTotals(a, { ...a })).to.equal(true);
		expect(sameTotals(a, { ...a, shippingTotal: 1, grandTotal: 101 })).to.equal(false);
		expect(sameTotals(null, a)).to.equal(false);
	});

	it("place names everything still missing", () => {
		expect(missingForPlace({ address: null, shippingMethodId: null, paymentMethod: null })).to.deep.equal(["address", "shippingMethod", "paymentMethod"]);
		expect(missingForPlace({ address: {}, shippingMethodId: "m", paymentMethod: null })).to.deep.equal(["paymentMethod"]);
		expect(missingForPlace({ address: {}, shippingMethodId: "m", paymentMethod: "card" })).to.deep.equal([]);
		// A guest cart (no customer) also needs the guest's contact; a customer's never does.
		expect(missingForPlace({ address: {}, shippingMethodId: "m", paymentMethod: "card", customerId: null, contact: null })).to.deep.equal(["contact"]);
		expect(missingForPlace({ address: {}, shippingMethodId: "m", paymentMethod: "card", customerId: null, contact: { email: "a@b.pl", phone: null } })).to.deep.equal([]);
		expect(missingForPlace({ address: {}, shippingMethodId: "m", paymentMethod: "card", customerId: "c", contact: null })).to.deep.equal([]);
	});

	it("payment details are checked against the chosen method, naming the field", () => {
		expect(paymentDetailsFor("blik", { blikCode: "777123" })).to.deep.equal({ blikCode: "777123" });
		const bad = (() => {
			try {
				paymentDetailsFor("blik", { blikCode: "12345" });
			} catch (err) {
				return err as any;
			}
		})();
		expect(bad.code).to.equal(422);
		expect(bad.data.map((f: any) => f.field)).to.deep.equal(["paymentDetails.blikCode"]);
		expect(() => paymentDetailsFor("card", { blikCode: "777123" })).to.throw(/payment method 'card'/);
		expect(paymentDetailsFor("paypal", { returnUrl: "https://shop.example/ok", cancelUrl: "https://shop.example/no" })).to.include({ returnUrl: "https://shop.example/ok" });
		expect(() => paymentDetailsFor("paypal", { returnUrl: "javascript:alert(1)", cancelUrl: "https://shop.example/no" })).to.throw();
	});
});
