/**
 * cancel-order, step by step: given each participant's reply or failure, expect the next
 * command (test/support/saga-scenario.ts).
 */
import { expect } from "chai";
import { Inventory, Orders, Payments, Promotions } from "../../contracts/actions";
import { cancelOrder, CancelOrderData, refundDue } from "../../sagas/cancel-order.saga";
import { outage, refused, sagaScenario, SagaScenario } from "../support/saga-scenario";

const PLN = (amount: number) => ({ amount, currency: "PLN" });
const base: CancelOrderData = {
	sagaId: "ca9c0000-0000-4000-8000-000000000001",
	orderId: "0a0e0000-0000-4000-8000-000000000002",
	reason: "Changed my mind",
	requestedBy: "c0570000-0000-4000-8000-000000000001",
	payment: { status: "authorized", captured: PLN(0), refunded: PLN(0) }
};

describe("cancel-order saga (given/expect)", () => {
	let t: SagaScenario<CancelOrderData>;
	afterEach(async () => t?.stop());

	it("releasing the stock is the point of no return; nothing after it compensates", () => {
		expect(cancelOrder.steps.map(s => [s.name, s.pivot, s.retriable, !!s.compensate])).to.deep.equal([
			["releaseStock", true, false, false],
			["voidPayment", false, true, false],
			["refundPayment", false, true, false],
			["releasePromotion", false, true, false],
			["markCancelled", false, true, false]
		]);
	});

	it("an authorized payment: stock released → payment voided → code given back → order cancelled", async () => {
		t = await sagaScenario(cancelOrder, base, { sagaId: base.sagaId });
		t.expectCommand(Inventory.release, { orderId: base.orderId, reason: "Changed my mind" });
		await t.reply({ orderId: base.orderId, lines: [{ sku: "SKU-1", quantity: 2 }] });
		t.expectCommand(Payments.void, { orderId: base.orderId });
		await t.reply({});
		t.expectCommand(Promotions.release, { orderId: base.orderId });
		await t.reply({ released: true });
		const cancelled = t.expectCommand(Orders.markCancelled, { orderId: base.orderId, reason: "Changed my mind" });
		expect(cancelled).to.not.have.property("refundAmount");
		await t.reply({ id: base.orderId, status: "cancelled" });
		await t.expectEnd("completed");
		expect(t.trail()).to.deep.equal(["inventory.release", "payments.void", "promotions.release", "orders.markCancelled"]);
	});

	it("a captured payment is refunded (what is left of it), and the order says how much", async () => {
		const captured: CancelOrderData = { ...base, payment: { status: "partially_refunded", captured: PLN(13000), refunded: PLN(3000) } };
		expect(refundDue(captured)).to.deep.equal(PLN(10000));
		t = await sagaScenario(cancelOrder, captured, { sagaId: base.sagaId });
		await t.reply({});
		t.expectCommand(Payments.refund, { orderId: base.orderId, amount: PLN(10000), reason: "Changed my mind" });
		await t.reply({ refundId: "rf-1" });
		t.expectCommand(Promotions.release);
		await t.reply({ released: false });
		t.expectCommand(Orders.markCancelled, { refundAmount: PLN(10000) });
		await t.reply({});
		const rec = await t.expectEnd("completed");
		expect(rec.data).to.include({ refundId: "rf-1" });
		expect(t.trail()).to.not.include("payments.void");
	});

	it("an order never paid (its payment failed) has nothing to void or refund", async () => {
		t = await sagaScenario(cancelOrder, { ...base, payment: { status: "failed", captured: PLN(0), refunded: PLN(0) } }, { sagaId: base.sagaId });
		await t.reply({});
		t.expectCommand(Promotions.release);
		await t.reply({});
		t.expectCommand(Orders.markCancelled);
		await t.reply({});
		await t.expectEnd("completed");
	});

	it("stock release refused: nothing changed, the cancellation fails and undoes nothing", async () => {
		t = await sagaScenario(cancelOrder, base, { sagaId: base.sagaId });
		t.expectCommand(Inventory.release);
		await t.fail(refused("INVALID_TRANSITION"));
		const rec = await t.expectEnd("compensated");
		expect(rec.failure).to.include({ step: "releaseStock", type: "INVALID_TRANSITION" });
		expect(t.trail()).to.deep.equal(["inventory.release"]);
	});

	it("after the stock is released a failing void is retried until it succeeds; the order is never left half cancelled", async () => {
		t = await sagaScenario(cancelOrder, base, { sagaId: base.sagaId });
		await t.reply({});
		for (let i = 0; i < 4; i++) {
			t.expectCommand(Payments.void);
			await t.fail(outage());
			await t.passTime(await t.expectRetryScheduled());
		}
		t.expectCommand(Payments.void);
		await t.reply({});
		await t.reply({});
		t.expectCommand(Orders.markCancelled);
		await t.reply({});
		await t.expectEnd("completed");
		expect(t.trail().filter(a => a.startsWith("undo"))).to.deep.equal([]);
	});

	it("a crash in the middle: a fresh replica sends the same step again with the same key and goes on", async () => {
		t = await sagaScenario(cancelOrder, base, { sagaId: base.sagaId });
		await t.reply({});
		t.expectCommand(Payments.void);
		await t.restart();
		t.expectCommand(Payments.void, { orderId: base.orderId });
		await t.reply({});
		await t.reply({});
		await t.reply({});
		await t.expectEnd("completed");
		const voids = t.sent.filter(c => c.action === "payments.void");
		expect(new Set(voids.map(c => (c.params as any).idempotencyKey)).size).to.equal(1);
	});
});
