import { expect } from "chai";
import { alertsFor, normalizeLines, planReservation } from "../../services/inventory/stock";

const row = (sku: string, on_hand: number, reserved = 0) => ({ sku, product_id: sku, on_hand, reserved, low_stock_threshold: 2 });

describe("stock rules", () => {
	it("a reservation is planned only when every line is covered", () => {
		expect(planReservation([row("a", 5), row("b", 2, 1)], [{ sku: "a", quantity: 5 }, { sku: "b", quantity: 1 }])).to.deep.equal({ ok: true });
		expect(planReservation([row("a", 5), row("b", 2, 1)], [{ sku: "a", quantity: 1 }, { sku: "b", quantity: 2 }])).to.deep.equal({ ok: false, sku: "b", requested: 2, available: 1 });
	});

	it("an unknown SKU has nothing available, and repeated lines count together", () => {
		expect(planReservation([], [{ sku: "x", quantity: 1 }])).to.deep.equal({ ok: false, sku: "x", requested: 1, available: 0 });
		expect(planReservation([row("a", 3)], [{ sku: "a", quantity: 2 }, { sku: "a", quantity: 2 }])).to.include({ ok: false, requested: 4 });
	});

	it("lines are merged and sorted by SKU so rows are locked in one order", () => {
		expect(normalizeLines([{ sku: "b", quantity: 1 }, { sku: "a", quantity: 2 }, { sku: "b", quantity: 3 }])).to.deep.equal([{ sku: "a", quantity: 2 }, { sku: "b", quantity: 4 }]);
	});

	it("alerts fire when available stock crosses the threshold or reaches zero, once", () => {
		expect(alertsFor(5, 2, 2)).to.deep.equal(["low_stock"]);
		expect(alertsFor(2, 1, 2)).to.deep.equal([]);
		expect(alertsFor(1, 0, 2)).to.deep.equal(["out_of_stock"]);
		expect(alertsFor(5, 0, 2)).to.deep.equal(["out_of_stock"]);
		expect(alertsFor(0, 3, 2)).to.deep.equal([]);
	});
});
