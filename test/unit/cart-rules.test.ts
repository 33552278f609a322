import { expect } from "chai";
import { cappedQuantity, cartTotal, mergeLines, priceLines } from "../../services/carts/cart";
import { placeAnswer, refusalAtLock } from "../../services/checkout/answer";
import { toHttpError } from "../../services/api/http-errors";
import { Errors } from "moleculer";

describe("cart rules", () => {
	it("an add is capped to the available stock, counting what the cart already holds", () => {
		expect(cappedQuantity(0, 3, 10)).to.equal(3);
		expect(cappedQuantity(2, 5, 4)).to.equal(4);
		expect(cappedQuantity(0, 1, 0)).to.equal(0);
	});

	it("lines are priced at the product's current price and a forgotten product drops out", () => {
		const lines = priceLines(
			[
				{ id: "i1", product_id: "p1", sku: "p1", variant_id: null, quantity: 2 },
				{ id: "i2", product_id: "gone", sku: "gone", variant_id: null, quantity: 1 }
			],
			[{ id: "p1", name: "Mug", price: { amount: 1250, currency: "PLN" }, status: "active" }]
		);
		expect(lines).to.have.length(1);
		expect(lines[0]!.lineTotal).to.deep.equal({ amount: 2500, currency: "PLN" });
		expect(cartTotal(lines)).to.deep.equal({ amount: 2500, currency: "PLN" });
		expect(cartTotal([])).to.deep.equal({ amount: 0, currency: "PLN" });
	});
});

describe("merging a guest cart", () => {
	const item = (sku: string, quantity: number) => ({ id: sku, product_id: sku, sku, variant_id: null, quantity });
	it("adds the guest's quantities to the customer's, capped to stock, never taking away what the customer had", () => {
		const lines = mergeLines([item("a", 2), item("c", 1)], [item("a", 3), item("b", 1), item("z", 4)], new Map([["a", 4], ["b", 5], ["z", 0]]));
		expect(lines.map(l => [l.sku, l.before, l.quantity, l.capped])).to.deep.equal([["a", 2, 4, true], ["b", 0, 1, false], ["z", 0, 0, true]]);
		expect(mergeLines([item("a", 5)], [item("a", 1)], new Map([["a", 3]]))[0]).to.include({ quantity: 5, capped: true });
	});
});

describe("checkout answers", () => {
	const base = { id: "s1", type: "place-order", step: 0, stepStatus: "done", version: 3, attempts: 1, completedSteps: [], compensatedSteps: [], history: [], createdAt: "", updatedAt: "" } as any;
	const data = { sagaId: "s1", orderId: "o1", cartId: "c1", customerId: "u1", customerEmail: "a@b.c", paymentToken: "t", last4: "4242", orderNumber: "SC-1" };

	it("a completed saga answers a confirmed order with an authorized payment", () => {
		const a = placeAnswer({ ...base, status: "completed", state: "completed", data });
		expect(a).to.deep.include({ orderId: "o1", orderNumber: "SC-1", status: "confirmed" });
		expect(a.payment.status).to.equal("authorized");
	});

	it("a declined payment answers payment_failed; any other failure cancelled", () => {
		expect(placeAnswer({ ...base, status: "compensated", state: "compensated", data, failure: { step: "authorizePayment", message: "declined", type: "PAYMENT_DECLINED" } }).status).to.equal("payment_failed");
		expect(placeAnswer({ ...base, status: "compensated", state: "compensated", data, failure: { step: "reserveStock", message: "none", type: "OUT_OF_STOCK" } }).status).to.equal("cancelled");
		expect(placeAnswer({ ...base, status: "running", state: "reserving_stock", data }).status).to.equal("pending");
	});

	it("a saga that failed locking the cart is a refusal of the request, not an order", () => {
		expect(refusalAtLock({ ...base, status: "compensated", state: "compensated", data, failure: { step: "lockCart", message: "locked", type: "CART_LOCKED" } })).to.deep.equal({ type: "CART_LOCKED", message: "locked" });
		expect(refusalAtLock({ ...base, status: "compensated", state: "compensated", data, failure: { step: "reserveStock", message: "x", type: "OUT_OF_STOCK" } })).to.equal(null);
	});
});

describe("gateway error mapping", () => {
	it("client errors keep their status and type; internals become a 500 that says nothing", () => {
		expect(toHttpError(new Errors.MoleculerClientError("nope", 409, "OUT_OF_STOCK", { sku: "x" }))).to.deep.include({ status: 409 });
		expect(toHttpError(new Errors.ValidationError("bad", "VALIDATION_ERROR", [{ field: "a" }])).status).to.equal(422);
		const internal = toHttpError(new Error("db password is hunter2"));
		expect(internal.status).to.equal(500);
		expect(JSON.stringify(internal.body)).to.not.include("hunter2");
	});

	it("a service that is down is a 503, a timeout a 504, a malformed body a 400, a huge one a 413", () => {
		expect(toHttpError(new Errors.ServiceNotFoundError({ action: "orders.get" })).status).to.equal(503);
		expect(toHttpError(new Errors.RequestTimeoutError({ action: "orders.get" })).status).to.equal(504);
		expect(toHttpError(Object.assign(new SyntaxError("Unexpected token"), { status: 400, type: "entity.parse.failed" })).status).to.equal(400);
		expect(toHttpError({ status: 413, type: "entity.too.large", message: "too large" }).status).to.equal(413);
	});
});
