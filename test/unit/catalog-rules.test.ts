import { expect } from "chai";
import { categoryTree, depthUnder, diffProduct, MAX_CATEGORY_DEPTH, productView, withDescendants } from "../../services/catalog/product";

describe("catalog rules", () => {
	it("a category is one level below its parent; a root is level 1; three levels at most", () => {
		expect(depthUnder(null)).to.equal(1);
		expect(depthUnder({ depth: 2 })).to.equal(3);
		expect(depthUnder({ depth: MAX_CATEGORY_DEPTH })).to.be.greaterThan(MAX_CATEGORY_DEPTH);
	});

	it("categories become a tree of roots with their children", () => {
		const tree = categoryTree([
			{ id: "b", name: "Kitchen", depth: 2, parent_id: "a" },
			{ id: "a", name: "Home", depth: 1, parent_id: null },
			{ id: "c", name: "Knives", depth: 3, parent_id: "b" },
			{ id: "d", name: "Garden", depth: 1, parent_id: null }
		]);
		expect(tree.map(n => n.id)).to.deep.equal(["a", "d"]);
		expect(tree[0]!.children.map(n => n.id)).to.deep.equal(["b"]);
		expect(tree[0]!.children[0]!.children.map(n => n.id)).to.deep.equal(["c"]);
		expect(tree[1]!.children).to.deep.equal([]);
	});

	it("a product's price is integer minor units with its currency, and stock appears only when given", () => {
		const row = { id: "p", sku: "p", name: "Lamp", description: "", price_amount: "12999", price_currency: "PLN", category_id: "c", vendor_id: null, status: "draft", created_at: "t", updated_at: "t" };
		expect(productView(row).price).to.deep.equal({ amount: 12999, currency: "PLN" });
		expect(productView(row)).to.not.have.property("available");
		expect(productView(row, new Map())).to.include({ available: 0 });
		expect(productView(row, new Map([["p", 7]]))).to.include({ available: 7 });
	});

	it("a product with variants shows each variant's stock and their sum", () => {
		const row = { id: "p", sku: "p", name: "Shirt", description: "", price_amount: 5000, price_currency: "PLN", category_id: "c", vendor_id: null, status: "active" };
		const variants = [
			{ id: "v1", product_id: "p", sku: "S-RED", name: "S red", attributes: { size: "S" }, position: 0 },
			{ id: "v2", product_id: "p", sku: "M-RED", name: "M red", attributes: '{"size":"M"}', position: 1 }
		];
		const view = productView(row, new Map([["S-RED", 2], ["M-RED", 3], ["p", 100]]), variants);
		expect(view.available).to.equal(5);
		expect(view.variants.map(v => [v.sku, v.available, v.attributes.size])).to.deep.equal([["S-RED", 2, "S"], ["M-RED", 3, "M"]]);
	});

	it("a patch changes only the fields whose value differs, each with its old and new value", () => {
		const row = { name: "Lamp", description: "old", price_amount: "100", price_currency: "PLN", category_id: "c", vendor_id: null };
		const same = diffProduct(row, { name: "Lamp", price: { amount: 100, currency: "PLN" }, vendorId: null });
		expect(same.changedFields).to.deep.equal({});
		const d = diffProduct(row, { price: { amount: 250, currency: "PLN" }, description: "new" });
		expect(d.changedFields).to.deep.equal({ price: { from: { amount: 100, currency: "PLN" }, to: { amount: 250, currency: "PLN" } }, description: { from: "old", to: "new" } });
		expect(d.columns).to.deep.equal({ price_amount: 250, price_currency: "PLN", description: "new" });
	});

	it("a category's listing covers every category under it", () => {
		const rows = [{ id: "a", parent_id: null }, { id: "b", parent_id: "a" }, { id: "c", parent_id: "b" }, { id: "d", parent_id: null }];
		expect(withDescendants(rows, "a").sort()).to.deep.equal(["a", "b", "c"]);
		expect(withDescendants(rows, "d")).to.deep.equal(["d"]);
	});
});
