/**
 * place-order, step by step: given a participant's reply, failure or event, or the deadline,
 * expect the next command or compensation (test/support/saga-scenario.ts).
 */
import { expect } from "chai";
import { Carts, Inventory, Orders, PaymentEvents, Payments, Promotions } from "../../contracts/actions";
import { settings } from "../../infra/settings";
import { placeOrder, PlaceOrderData } from "../../sagas/place-order.saga";
import { outage, refused, sagaScenario, SagaScenario } from "../support/saga-scenario";

const PLN = (amount: number) => ({ amount, currency: "PLN" });
const lines = [{ productId: "p1", sku: "SKU-1", name: "Lamp", categoryId: null, quantity: 2, unitPrice: PLN(5000) }];
/** The lines as orders takes them: the category stays with the cart. */
const orderLines = lines.map(({ categoryId: _category, ...line }) => line);
/** A card checkout: 2 lamps, no code, free shipping, no services. */
const data: PlaceOrderData = {
	sagaId: "5a9a0000-0000-4000-8000-000000000001",
	orderId: "0a0e0000-0000-4000-8000-000000000001",
	cartId: "ca700000-0000-4000-8000-000000000001",
	checkoutId: "c4ec0000-0000-4000-8000-000000000001",
	customerId: "c0570000-0000-4000-8000-000000000001",
	customerEmail: "ada@example.com",
	lines,
	shippingAddress: { addressId: null, recipientName: "Ada", street: "Marszałkowska 1", city: "Warszawa", state: null, postalCode: "00-950", country: "PL" },
	shippingMethod: { id: "5e1f0000-0000-4000-8000-000000000001", name: "Courier", carrier: "DPD", price: PLN(0) },
	deliveryDate: "2030-01-02",
	express: false,
	addons: [],
	promotions: [],
	promoCode: null,
	totals: { cartTotal: 10000, promotionDiscount: 0, shippingTotal: 0, servicesTotal: 0, grandTotal: 10000, currency: "PLN" },
	total: PLN(10000),
	paymentMethod: "card",
	paymentToken: "tok_1"
};
const paymentId = "9a900000-0000-4000-8000-000000000001";

/** The same checkout paid by BLIK: the bank answers later, as an event. */
const blik: PlaceOrderData = { ...data, paymentMethod: "blik", paymentToken: undefined, blikCode: "777123" };

/** Given: the cart locks, the order is created and the stock reserved (and, paid later, awaits payment); the payment is the command now out. */
async function upToPayment(d: PlaceOrderData = data): Promise<SagaScenario<PlaceOrderData>> {
	const t = await sagaScenario(placeOrder, d, { sagaId: d.sagaId });
	t.expectCommand(Carts.lock, { cartId: d.cartId, sagaId: d.sagaId });
	await t.reply({ cartId: d.cartId, customerId: d.customerId, lines, total: PLN(10000) });
	t.expectCommand(Orders.create, { orderId: d.orderId, customerId: d.customerId, lines: orderLines });
	await t.reply({ id: d.orderId, orderNumber: "ORD-2026-000001", status: "pending", customerId: d.customerId, total: PLN(10000) });
	t.expectCommand(Inventory.reserve, { orderId: d.orderId, lines: [{ sku: "SKU-1", quantity: 2 }] });
	await t.reply({ orderId: d.orderId, lines: [{ sku: "SKU-1", quantity: 2 }] });
	if (d.paymentMethod !== "card") {
		t.expectCommand(Orders.markAwaitingPayment, { orderId: d.orderId });
		await t.reply({ id: d.orderId, status: "awaiting_payment" });
	}
	t.expectCommand(Payments.authorize, { orderId: d.orderId, amount: PLN(10000), ...(d.paymentMethod === "card" ? { paymentToken: "tok_1" } : { blikCode: d.blikCode }) });
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
			["redeemPromotion", false, false, true, false],
			["reserveStock", false, false, true, false],
			["markAwaitingPayment", false, false, false, false],
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
			t = await upToPayment(blik);
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
			t = await upToPayment(blik);
			await t.reply({ paymentId, status: "pending" });
			await t.expectWaiting(PaymentEvents.authorized);
			await t.event(PaymentEvents.failed, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), reason: "Rejected by the bank", type: "PAYMENT_DECLINED" });
			const rec = await expectUndoneFromPayment(t, "PAYMENT_DECLINED");
			expect(rec.failure).to.deep.equal({ step: "authorizePayment", message: "Rejected by the bank", type: "PAYMENT_DECLINED" });
		});

		it("no answer by the deadline → compensated (DEADLINE_PASSED); an approval after that is ignored and says so", async () => {
			t = await upToPayment(blik);
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
			t = await upToPayment(blik);
			await t.reply({ paymentId, status: "pending" });
			t.clock.advance(settings.paymentDeadlineMs); // no replica has looked yet
			const late = await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), transactionId: "tx-late" });
			expect(late).to.deep.equal({ accepted: false, sagaId: data.sagaId, reason: "the deadline passed" });
			await expectUndoneFromPayment(t, "DEADLINE_PASSED");
		});

		it("an event that arrives before authorize answered is kept, and the saga goes on once it answers", async () => {
			t = await upToPayment(blik);
			const early = await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), transactionId: "tx-3" });
			expect(early.accepted).to.equal(true);
			await t.reply({ paymentId, status: "pending" });
			t.expectCommand(Orders.confirm, { paymentId });
		});

		it("a card never waits: its own events, emitted while authorize is in flight, find no saga waiting and change nothing about its answer", async () => {
			t = await upToPayment();
			const delivery = await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "card", amount: PLN(10000), transactionId: "tx-c" });
			expect(delivery).to.deep.equal({ accepted: false, reason: "no saga waits for it" });
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
			t = await upToPayment(blik);
			const first = await t.event(PaymentEvents.failed, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), reason: "no", type: "PAYMENT_DECLINED" });
			const again = await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "blik", amount: PLN(10000), transactionId: "tx-4" });
			expect([first.accepted, again]).to.deep.equal([true, { accepted: false, sagaId: data.sagaId, reason: "already received" }]);
			await t.reply({ paymentId, status: "pending" });
			await expectUndoneFromPayment(t, "PAYMENT_DECLINED");
		});

		it("the wait and its deadline survive the orchestrator: a fresh replica takes the event, or fires the deadline", async () => {
			t = await upToPayment(blik);
			await t.reply({ paymentId, status: "pending" });
			await t.restart();
			await t.expectWaiting(PaymentEvents.authorized);
			await t.event(PaymentEvents.authorized, data.orderId, { paymentId, orderId: data.orderId, method: "paypal", amount: PLN(10000), transactionId: "tx-5" });
			t.expectCommand(Orders.confirm);

			const u = await upToPayment(blik);
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

	describe("a BLIK checkout with a promo code, express delivery and an add-on", () => {
		const blik: PlaceOrderData = {
			...data,
			paymentMethod: "blik",
			paymentToken: undefined,
			blikCode: "777123",
			promoCode: "SAVE10",
			express: true,
			addons: [{ id: "add0", name: "Gift box", price: PLN(500) }],
			promotions: [{ promotionId: "pr1", name: "Ten off", code: "SAVE10", discount: PLN(1000) }],
			totals: { cartTotal: 10000, promotionDiscount: 1000, shippingTotal: 3500, servicesTotal: 500, grandTotal: 13000, currency: "PLN" },
			total: PLN(13000)
		};

		/** Given: up to the payment, the code redeemed and the order awaiting payment. */
		async function upToBlik(): Promise<SagaScenario<PlaceOrderData>> {
			const s = await sagaScenario(placeOrder, blik, { sagaId: blik.sagaId });
			s.expectCommand(Carts.lock, { cartId: blik.cartId, expectedTotal: PLN(10000) });
			await s.reply({ cartId: blik.cartId, customerId: blik.customerId, lines, total: PLN(10000) });
			s.expectCommand(Orders.create, { orderId: blik.orderId, totals: blik.totals, shippingMethod: blik.shippingMethod, addons: blik.addons, promotions: blik.promotions, express: true, paymentMethod: "blik" });
			await s.reply({ id: blik.orderId, orderNumber: "ORD-2", status: "pending", customerId: blik.customerId, total: PLN(13000) });
			s.expectCommand(Promotions.redeem, { orderId: blik.orderId, customerId: blik.customerId, code: "SAVE10" });
			await s.reply({ redemptionId: "r1", promotionId: "pr1" });
			s.expectCommand(Inventory.reserve);
			await s.reply({ orderId: blik.orderId, lines: [{ sku: "SKU-1", quantity: 2 }] });
			s.expectCommand(Orders.markAwaitingPayment, { orderId: blik.orderId });
			await s.reply({ id: blik.orderId, status: "awaiting_payment" });
			s.expectCommand(Payments.authorize, { orderId: blik.orderId, amount: PLN(13000), method: "blik", blikCode: "777123" });
			return s;
		}

		it("the bank approves: the order is confirmed for the grand total, the code stays redeemed", async () => {
			t = await upToBlik();
			await t.reply({ paymentId, status: "pending", transactionId: "blik-1" });
			await t.expectWaiting(PaymentEvents.authorized);
			await t.event(PaymentEvents.authorized, blik.orderId, { paymentId, orderId: blik.orderId, method: "blik", amount: PLN(13000), transactionId: "blik-1" });
			t.expectCommand(Orders.confirm, { orderId: blik.orderId, paymentId });
			await t.reply({});
			await t.reply({});
			const rec = await t.expectEnd("completed");
			expect(rec.data.transactionId).to.equal("blik-1");
			expect(t.trail()).to.deep.equal(["carts.lock", "orders.create", "promotions.redeem", "inventory.reserve", "orders.markAwaitingPayment", "payments.authorize", "orders.confirm", "carts.checkout"]);
		});

		it("the bank rejects: payment voided, stock released, the code's use given back, the order failed, the cart unlocked", async () => {
			t = await upToBlik();
			await t.reply({ paymentId, status: "pending" });
			await t.event(PaymentEvents.failed, blik.orderId, { paymentId, orderId: blik.orderId, method: "blik", amount: PLN(13000), reason: "Rejected by the bank", type: "PAYMENT_DECLINED" });
			t.expectCompensation(Payments.void, { orderId: blik.orderId });
			await t.reply(null);
			t.expectCompensation(Inventory.release, { orderId: blik.orderId });
			await t.reply({});
			t.expectCompensation(Promotions.release, { orderId: blik.orderId });
			await t.reply({ released: true });
			t.expectCompensation(Orders.fail, { orderId: blik.orderId, code: "PAYMENT_DECLINED" });
			await t.reply(null);
			t.expectCompensation(Carts.unlock);
			await t.reply({});
			await t.expectEnd("compensated");
		});

		it("the code is used up when the order redeems it: the order fails, nothing is reserved or charged", async () => {
			t = await sagaScenario(placeOrder, blik, { sagaId: blik.sagaId });
			await t.reply({ cartId: blik.cartId, customerId: blik.customerId, lines, total: PLN(10000) });
			await t.reply({ id: blik.orderId, orderNumber: "ORD-3", status: "pending" });
			t.expectCommand(Promotions.redeem);
			await t.fail(refused("PROMO_CODE_USED_UP"));
			t.expectCompensation(Promotions.release, { orderId: blik.orderId });
			await t.reply({ released: false });
			t.expectCompensation(Orders.fail, { code: "PROMO_CODE_USED_UP" });
			await t.reply(null);
			t.expectCompensation(Carts.unlock);
			await t.reply({});
			const rec = await t.expectEnd("compensated");
			expect(rec.failure).to.include({ step: "redeemPromotion", type: "PROMO_CODE_USED_UP" });
			expect(t.trail()).to.not.include("inventory.reserve");
			expect(t.trail()).to.not.include("payments.authorize");
		});

		it("a cart changed since the checkout showed it is refused at the lock: nothing is created", async () => {
			t = await sagaScenario(placeOrder, blik, { sagaId: blik.sagaId });
			t.expectCommand(Carts.lock);
			await t.fail(refused("CART_CHANGED"));
			t.expectCompensation(Carts.unlock);
			await t.reply({ unlocked: false });
			const rec = await t.expectEnd("compensated");
			expect(rec.failure).to.include({ step: "lockCart", type: "CART_CHANGED" });
			expect(t.trail()).to.deep.equal(["carts.lock", "undo carts.unlock"]);
		});
	});
});
