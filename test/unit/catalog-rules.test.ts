import { expect } from "chai";
import { categoryTree, depthUnder, MAX_CATEGORY_DEPTH, productView } from "../../services/catalog/product";

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
		expect(productView(row, 0)).to.include({ available: 0 });
	});
});
