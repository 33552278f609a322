import { expect } from "chai";
import { alertsFor, available, normalizeLines, onHandRefusal, planReservation, view } from "../../services/inventory/stock";

const row = (sku: string, on_hand: number, reserved = 0) => ({ sku, product_id: sku, on_hand, reserved, low_stock_threshold: 2 });

describe("stock rules", () => {
	it("available stock is on hand less what is reserved", () => {
		expect(available(row("a", 10, 3))).to.equal(7);
		expect(view(row("a", 10, 3))).to.deep.equal({ sku: "a", productId: "a", variantId: null, onHand: 10, reserved: 3, available: 7, lowStockThreshold: 2, sellable: true });
	});

	it("a reservation is planned only when every line is covered, and names the first short line", () => {
		expect(planReservation([row("a", 5), row("b", 2, 1)], [{ sku: "a", quantity: 5 }, { sku: "b", quantity: 1 }])).to.deep.equal({ ok: true });
		expect(planReservation([row("a", 5), row("b", 2, 1)], [{ sku: "a", quantity: 1 }, { sku: "b", quantity: 2 }])).to.deep.equal({ ok: false, sku: "b", requested: 2, available: 1 });
		expect(planReservation([row("a", 0), row("b", 0)], [{ sku: "b", quantity: 1 }, { sku: "a", quantity: 1 }])).to.include({ ok: false, sku: "a" });
	});

	it("an unknown SKU has nothing available, and repeated lines count together", () => {
		expect(planReservation([], [{ sku: "x", quantity: 1 }])).to.deep.equal({ ok: false, sku: "x", requested: 1, available: 0 });
		expect(planReservation([row("a", 3)], [{ sku: "a", quantity: 2 }, { sku: "a", quantity: 2 }])).to.deep.equal({ ok: false, sku: "a", requested: 4, available: 3 });
		expect(planReservation([row("a", 4)], [{ sku: "a", quantity: 2 }, { sku: "a", quantity: 2 }])).to.deep.equal({ ok: true });
	});

	it("lines are merged and sorted by SKU so rows are locked in one order", () => {
		expect(normalizeLines([{ sku: "b", quantity: 1 }, { sku: "a", quantity: 2 }, { sku: "b", quantity: 3 }])).to.deep.equal([{ sku: "a", quantity: 2 }, { sku: "b", quantity: 4 }]);
	});

	it("on hand may go down to what is reserved, never below it nor below zero", () => {
		expect(onHandRefusal(row("a", 5, 3), 3)).to.equal(null);
		expect(onHandRefusal(row("a", 5, 0), 0)).to.equal(null);
		expect(onHandRefusal(row("a", 5, 3), 2)).to.match(/3 units are reserved/);
		expect(onHandRefusal(row("a", 5, 0), -1)).to.match(/below zero/);
	});

	it("alerts fire when available stock falls below the threshold or reaches zero, once per crossing", () => {
		expect(alertsFor(5, 1, 2)).to.deep.equal(["low_stock"]);
		expect(alertsFor(2, 1, 2)).to.deep.equal(["low_stock"]);
		expect(alertsFor(5, 2, 2)).to.deep.equal([]); // at the threshold is not below it
		expect(alertsFor(1, 0, 2)).to.deep.equal(["out_of_stock"]); // was low already: only the new fact
		expect(alertsFor(5, 0, 2)).to.deep.equal(["low_stock", "out_of_stock"]); // both crossed at once
		expect(alertsFor(0, 0, 2)).to.deep.equal([]);
		expect(alertsFor(0, 3, 2)).to.deep.equal([]);
		expect(alertsFor(1, 5, 2)).to.deep.equal([]);
		expect(alertsFor(1, 0, 0)).to.deep.equal(["out_of_stock"]);
	});
});
