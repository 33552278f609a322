import { expect } from "chai";
import { formatMoney, render, TEMPLATE_NAMES, verificationData } from "../../services/notifications/templates";

describe("notification templates", () => {
	it("every message has a subject, a plain-text and an HTML body", () => {
		const data = { orderNumber: "SC-1", lines: [], total: { amount: 100, currency: "PLN" }, productName: "Mug", sku: "M", currentStock: 1, threshold: 2, token: "t", link: "l" };
		for (const name of TEMPLATE_NAMES) {
			const m = render(name, data);
			expect(m.subject, name).to.not.equal("");
			expect(m.text, name).to.not.equal("");
			expect(m.html, name).to.match(/<p>/);
		}
	});

	it("HTML escapes what it inserts; plain text keeps it as written", () => {
		const m = render("low_stock", { productName: "<b>Mug</b> & co", sku: "M", currentStock: 1, threshold: 2 });
		expect(m.html).to.include("&lt;b&gt;Mug&lt;/b&gt; &amp; co");
		expect(m.text).to.include("<b>Mug</b> & co");
		expect(m.subject).to.equal("Low stock: <b>Mug</b> & co");
	});

	it("money in its currency's decimals; the verification link carries the token", () => {
		expect(formatMoney({ amount: 12999, currency: "PLN" })).to.equal("PLN 129.99");
		expect(formatMoney({ amount: 500, currency: "JPY" })).to.equal("JPY 500");
		// Asked again (the decimals now remembered per currency) the answers stay; an unknown code has two decimals.
		expect(formatMoney({ amount: 501, currency: "JPY" })).to.equal("JPY 501");
		expect(formatMoney({ amount: 1050, currency: "KWD" })).to.equal("KWD 1.050");
		expect(formatMoney({ amount: 1050, currency: "KWD" })).to.equal("KWD 1.050");
		expect(formatMoney({ amount: 1050, currency: "nope" })).to.equal("nope 10.50");
		expect(verificationData({ token: "a b", verifyUrl: "http://x/verify?lang=pl" }).link).to.equal("http://x/verify?lang=pl&token=a%20b");
	});
});
