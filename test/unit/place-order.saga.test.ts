/**
 * place-order, step by step: given a participant's reply, failure or event, or the deadline,
 * expect the next command or compensation (test/support/saga-scenario.ts).
 */
import { expect } from "chai";
import { Carts, Inventory, Orders, PaymentEvents, Payments } from "../../contracts/actions";
import { settings } from "../../mixins/settings";
import { placeOrder, PlaceOrderData } from "../../sagas/place-order.saga";
import { outage, refused, sagaScenario, SagaScenario } from "../support/saga-scenario";

const PLN = (amount: number) => ({ amount, currency: "PLN" });
const data: PlaceOrderData = {
	sagaId: "5a9a0000-0000-4000-8000-000000000001",
	orderId: "0a0e0000-0000-4000-8000-000000000001",
	cartId: "ca700000-0000-4000-8000-000000000001",
	customerId: "c0570000-0000-4000-8000-000000000001",
	customerEmail: "ada@example.com",
	paymentToken: "tok_1"
};
const lines = [{ productId: "p1", sku: "SKU-1", name: "Lamp", quantity: 2, unitPrice: PLN(5000) }];
const paymentId = "9a900000-0000-4000-8000-000000000001";

/** Given: the cart locks, the order is created and the stock reserved; the payment is the command now out. */
async function upToPayment(): Promise<SagaScenario<PlaceOrderData>> {
	const t = await sagaScenario(placeOrder, data, { sagaId: data.sagaId });
	t.expectCommand(Carts.lock, { cartId: data.cartId, sagaId: data.sagaId });
	await t.reply({ cartId: data.cartId, customerId: data.customerId, lines, total: PLN(10000) });
	t.expectCommand(Orders.create, { orderId: data.orderId, customerId: data.customerId, lines });
	await t.reply({ id: data.orderId, orderNumber: "ORD-2026-000001", status: "pending", customerId: data.customerId, total: PLN(10000) });
	t.expectCommand(Inventory.reserve, { orderId: data.orderId, lines: [{ sku: "SKU-1", quantity: 2 }] });
	await t.reply({ orderId: data.orderId, lines: [{ sku: "SKU-1", quantity: 2 }] });
	t.expectCommand(Payments.authorize, { orderId: data.orderId, amount: PLN(10000), paymentToken: "tok_1" });
	return t;
}

/** Expect: everything before the payment is undone, in reverse, with the failure's reason. */
async function expectUndoneFromPayment(t: SagaScenario<PlaceOrderData>, code: string) {
	t.expectCompensation(Payments.void, { orderId: data.orderId });
	await t.reply(null);
	t.expectCompensation(Inventory.release, { orderId: data.orderId });
	await t.reply({ orderId: data.orderId, lines: [] });
	t.expectCompensation(Orders.fail, { orderId: data.orderId, code });
	await t.reply(null);
	t.expectCompensation(Carts.unlock, { cartId: data.cartId, sagaId: data.sagaId });
	await t.reply({ cartId: data.cartId, unlocked: true });
	return t.expectEnd("compensated");
}

const UNDOES = ["undo payments.void", "undo inventory.release", "undo orders.fail", "undo carts.unlock"];

describe("place-order saga (given/expect)", () => {
	let t: SagaScenario<PlaceOrderData>;
	afterEach(async () => t?.stop());

	it("the definition marks authorizePayment as the point of no return and waits only there", () => {
		expect(placeOrder.steps.map(s => [s.name, s.pivot, s.retriable, !!s.compensate, !!s.await])).to.deep.equal([
			["lockCart", false, false, true, false],
			["createOrder", false, false, true, false],
			["reserveStock", false, false, true, false],
			["authorizePayment", true, false, true, true],
			["confirmOrder", false, true, false, false],
			["checkOutCart", false, true, false, false]
		]);
	});

	it("card: authorized at once → confirm the order → check the cart out → completed", async () => {
		t = await upToPayment();
		await t.reply({ paymentId, status: "authorized", transactionId: "tx-1" });
		t.expectCommand(Orders.confirm, { orderId: data.orderId, paymentId });
		await t.reply({ id: data.orderId, status: "confirmed" });
		t.expectCommand(Carts.checkout, { cartId: data.cartId, orderId: data.orderId });
		await t.reply({ cartId: data.cartId, orderId: data.orderId });
		const rec = await t.expectEnd("completed");
		expect(rec.data).to.include({ orderNumber: "ORD-2026-000001", paymentId });
		expect(t.trail().filter(a => a.startsWith("undo"))).to.deep.equal([]);
	});

	it("out of stock: the order fails with OUT_OF_STOCK, the cart is unlocked, no payment is asked for", async () => {
		t = await sagaScenario(placeOrder, data, { sagaId: data.sagaId });
		await t.reply({ cartId: data.cartId, customerId: data.customerId, lines, total: PLN(10000) });
		await t.reply({ id: data.orderId, orderNumber: "ORD-1", status: "pending", customerId: data.customerId, total: PLN(10000) });
		t.expectCommand(Inventory.reserve);
		await t.fail(refused("OUT_OF_STOCK"));
		t.expectCompensation(Inventory.release);
		await t.reply({ orderId: data.orderId, lines: [] });
		t.expectCompensation(Orders.fail, { code: "OUT_OF_STOCK", reason: "refused: OUT_OF_STOCK" });
		await t.reply(null);
		t.expectCompensation(Carts.unlock);
		await t.reply({ cartId: data.cartId, unlocked: true });
		const rec = await t.expectEnd("compensated");
		expect(rec.failure).to.include({ step: "reserveStock", type: "OUT_OF_STOCK" });
		expect(t.trail()).to.not.include("payments.authorize");
	});

	it("a declined card: the payment is voided, the stock released, the order failed, the cart unlocked", async () => {
		t = await upToPayment();
		await t.fail(refused("PAYMENT_DECLINED", 402));
		const rec = await expectUndoneFromPayment(t, "PAYMENT_DECLINED");
		expect(rec.failure).to.include({ step: "authorizePayment", type: "PAYMENT_DECLINED" });
	});

	it("a temporary failure before the pivot is retried with the same key after its backoff, then the saga goes on", async () => {
		t = await upToPayment();
		await t.fail(outage());
		expect(await t.expectRetryScheduled()).to.equal(200);
		await t.passTime(199);
		t.expectNoCommand();
		await t.passTime(1);
		t.expectCommand(Payments.authorize);
		await t.reply({ paymentId, status: "authorized" });
		t.expectCommand(Orders.confirm);
	});

	describe("BLIK / PayPal: authorize answers pending, then the bank's answer comes as an event", () => {
		it("payment.authorized → the order is confirmed with the event's payment id", async () => {
			t = await upToPayment();
			await t.reply({ paymentId: "pending-id", status: "pending" });
			const waiting = await t.expectWaiting(PaymentEvents.authorized);
			expect(waiting.state).to.equal("awaiting_authorize_payment");
			expect(waiting.wait!.until! - t.clock.now()).to.equal(settings.paymentDeadlineMs);
			await t.passTime(settings.paymentDeadlineMs - 1);
			t.expectNoCommand();
			const delivery = await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), transactionId: "tx-2" });
			expect(delivery).to.deep.equal({ accepted: true, sagaId: data.sagaId });
			t.expectCommand(Orders.confirm, { orderId: data.orderId, paymentId });
			await t.reply({});
			await t.reply({});
			await t.expectEnd("completed");
		});

		it("payment.failed → compensated with the event's reason and type", async () => {
			t = await upToPayment();
			await t.reply({ paymentId, status: "pending" });
			await t.expectWaiting(PaymentEvents.authorized);
			await t.event(PaymentEvents.failed, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), reason: "Rejected by the bank", type: "PAYMENT_DECLINED" });
			const rec = await expectUndoneFromPayment(t, "PAYMENT_DECLINED");
			expect(rec.failure).to.deep.equal({ step: "authorizePayment", message: "Rejected by the bank", type: "PAYMENT_DECLINED" });
		});

		it("no answer by the deadline → compensated (DEADLINE_PASSED); an approval after that is ignored and says so", async () => {
			t = await upToPayment();
			await t.reply({ paymentId, status: "pending" });
			await t.expectWaiting(PaymentEvents.authorized);
			await t.passDeadline();
			const rec = await expectUndoneFromPayment(t, "DEADLINE_PASSED");
			expect(rec.failure).to.include({ step: "authorizePayment", type: "DEADLINE_PASSED" });
			const late = await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), transactionId: "tx-late" });
			expect(late.accepted).to.equal(false);
			t.expectNoCommand();
			expect(t.trail()).to.not.include("orders.confirm");
		});

		it("an approval that arrives when the deadline has passed but has not fired yet loses to the deadline", async () => {
			t = await upToPayment();
			await t.reply({ paymentId, status: "pending" });
			t.clock.advance(settings.paymentDeadlineMs); // no replica has looked yet
			const late = await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), transactionId: "tx-late" });
			expect(late).to.deep.equal({ accepted: false, sagaId: data.sagaId, reason: "the deadline passed" });
			await expectUndoneFromPayment(t, "DEADLINE_PASSED");
		});

		it("an event that arrives before authorize answered is kept, and the saga goes on once it answers", async () => {
			t = await upToPayment();
			const early = await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), transactionId: "tx-3" });
			expect(early.accepted).to.equal(true);
			await t.reply({ paymentId, status: "pending" });
			t.expectCommand(Orders.confirm, { paymentId });
		});

		it("a card's own events, emitted while authorize is in flight, change nothing about its answer", async () => {
			t = await upToPayment();
			await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "card", amount: PLN(10000), transactionId: "tx-c" });
			await t.reply({ paymentId, status: "authorized" });
			t.expectCommand(Orders.confirm, { paymentId });

			const u = await upToPayment();
			try {
				await u.event(PaymentEvents.failed, data.orderId, { paymentId, orderId: data.orderId, method: "card", amount: PLN(10000), reason: "declined", type: "PAYMENT_DECLINED" });
				await u.fail(refused("PAYMENT_DECLINED", 402));
				await expectUndoneFromPayment(u, "PAYMENT_DECLINED");
				expect(u.trail().filter(a => a === "payments.authorize")).to.have.length(1);
			} finally {
				await u.stop();
			}
		});

		it("a repeated event is answered 'already received' and changes nothing", async () => {
			t = await upToPayment();
			const first = await t.event(PaymentEvents.failed, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), reason: "no", type: "PAYMENT_DECLINED" });
			const again = await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), transactionId: "tx-4" });
			expect([first.accepted, again]).to.deep.equal([true, { accepted: false, sagaId: data.sagaId, reason: "already received" }]);
			await t.reply({ paymentId, status: "pending" });
			await expectUndoneFromPayment(t, "PAYMENT_DECLINED");
		});

		it("the wait and its deadline survive the orchestrator: a fresh replica takes the event, or fires the deadline", async () => {
			t = await upToPayment();
			await t.reply({ paymentId, status: "pending" });
			await t.restart();
			await t.expectWaiting(PaymentEvents.authorized);
			await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "paypal", amount: PLN(10000), transactionId: "tx-5" });
			t.expectCommand(Orders.confirm);

			const u = await upToPayment();
			try {
				await u.reply({ paymentId, status: "pending" });
				await u.restart();
				await u.passDeadline();
				await expectUndoneFromPayment(u, "DEADLINE_PASSED");
			} finally {
				await u.stop();
			}
		});
	});

	describe("after the pivot (payment authorized) the order goes through", () => {
		async function authorized() {
			const s = await upToPayment();
			await s.reply({ paymentId, status: "authorized" });
			return s;
		}

		it("confirmOrder failing again and again is retried, backing off up to 30 s, and never voids, releases or fails anything", async () => {
			t = await authorized();
			const delays: number[] = [];
			for (let i = 0; i < 10; i++) {
				t.expectCommand(Orders.confirm);
				await t.fail(outage());
				const delay = await t.expectRetryScheduled();
				delays.push(delay);
				await t.passTime(delay);
			}
			expect(delays).to.deep.equal([200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
			t.expectCommand(Orders.confirm);
			await t.reply({});
			t.expectCommand(Carts.checkout);
			await t.reply({});
			await t.expectEnd("completed");
			expect(t.trail().filter(a => a.startsWith("undo"))).to.deep.equal([]);
		});

		it("checkOutCart refused parks the saga for an operator: nothing is undone, and an operator cannot make it compensate", async () => {
			t = await authorized();
			await t.reply({}); // confirmOrder
			t.expectCommand(Carts.checkout);
			await t.fail(refused("INVALID_TRANSITION"));
			const rec = await t.expectEnd("parked");
			expect(rec.failure).to.equal(undefined);
			expect(rec.parkedReason).to.match(/carts.checkout refused after the point of no return/);
			expect(t.trail().filter(a => a.startsWith("undo"))).to.deep.equal([]);
			for (const undo of UNDOES) expect(t.trail()).to.not.include(undo);

			const err = await t.operator.compensate(t.id).catch(x => x);
			expect(err).to.include({ code: 409, type: "INVALID_TRANSITION" });
			expect(err.message).to.match(/point of no return/);

			// An operator's retry goes forward.
			const retried = t.operator.retry(t.id);
			await t.settle();
			t.expectCommand(Carts.checkout);
			await t.reply({});
			expect((await retried).status).to.equal("completed");
		});

		it("a crash while confirming re-sends confirmOrder with the same key; nothing is undone", async () => {
			t = await authorized();
			t.expectCommand(Orders.confirm);
			await t.restart();
			t.expectCommand(Orders.confirm, { orderId: data.orderId });
			await t.reply({});
			await t.reply({});
			await t.expectEnd("completed");
			expect(t.trail()).to.deep.equal(["carts.lock", "orders.create", "inventory.reserve", "payments.authorize", "orders.confirm", "orders.confirm", "carts.checkout"]);
		});
	});
});
