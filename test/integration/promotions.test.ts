/**
 * promotions against the real servers, with TWO promotions replicas behind RabbitMQ (and a
 * caller node of its own, so calls really spread): admin validation, evaluation, the checkout's
 * applied/removed/code_applied events, redeem/release idempotent by order and key, and the race —
 * a code with 5 uses left, 20 concurrent redeems, exactly 5 succeed. Every refusal is checked to
 * change nothing.
 *
 * Automatic promotions here are always scoped to products of their own test, so one test's
 * promotion never discounts another's cart.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { countCalls, refusal, useShop } from "../support/cluster";

const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };
const PLN = (amount: number) => ({ amount, currency: "PLN" });
const line = (productId: string, quantity: number, unit: number, categoryId?: string) => ({ productId, quantity, unitPrice: PLN(unit), ...(categoryId ? { categoryId } : {}) });
const newCode = () => `T${randomUUID().slice(0, 8)}`.toUpperCase();

describe("promotions (real RabbitMQ and Postgres, two promotions replicas)", function () {
	this.timeout(60_000);
	const shop = useShop([[], ["promotions"], ["promotions"]], ["promotion.applied", "promotion.removed", "promotion.code_applied", "promotion.redeemed", "promotion.released"]);
	const schema = `${process.env.SCHEMA_PREFIX}promotions`;
	const t = (name: string) => shop.db.withSchema(schema).table(name);
	const count = async (name: string) => Number((await t(name).count<{ n: string }[]>("* as n"))[0]!.n);
	/** The state a refusal must leave as it was. */
	const snapshot = async () => ({ promotions: await t("promotions").orderBy("id"), redemptions: await t("redemptions").orderBy("id"), applied: await t("checkout_promotions").orderBy(["checkout_id", "promotion_id"]), outbox: await count("outbox") });
	const create = (p: Record<string, unknown>) => shop.call("promotions.create", p, admin);

	describe("admin", () => {
		it("creates, lists and changes promotions; codes are stored in upper case", async () => {
			const product = randomUUID();
			const p = await create({ name: "Spring", code: "spring-10", kind: "percentage", value: 10, minCartTotal: PLN(5000), productIds: [product], validFrom: "2020-01-01T00:00:00Z", validTo: "2099-01-01T00:00:00Z", usageLimit: 100, perCustomerLimit: 1 });
			expect(p).to.deep.include({ name: "Spring", code: "SPRING-10", kind: "percentage", value: 10, currency: "PLN", minCartTotal: PLN(5000), productIds: [product], categoryIds: [], usageLimit: 100, perCustomerLimit: 1, uses: 0, active: true, validFrom: "2020-01-01T00:00:00.000Z", validTo: "2099-01-01T00:00:00.000Z" });
			const listed = await shop.call("promotions.list", { code: "spring-10" }, admin);
			expect(listed).to.deep.include({ total: 1, page: 1 });
			expect(listed.rows[0].id).to.equal(p.id);
			const changed = await shop.call("promotions.update", { id: p.id, value: 15, usageLimit: null, active: false }, admin);
			expect(changed).to.deep.include({ value: 15, usageLimit: null, active: false, perCustomerLimit: 1, code: "SPRING-10" });
			expect(await shop.call("promotions.get", { id: p.id })).to.deep.equal(changed);
		});

		it("bad promotions are refused with 422 naming the field, a taken code with 409, and nothing is stored", async () => {
			const existing = await create({ name: "Taken", code: newCode(), kind: "fixed", value: 500 });
			const before = await snapshot();
			const base = { name: "Bad", kind: "percentage", value: 10 };
			for (const [what, params, field] of [
				["no name", { kind: "fixed", value: 1 }, "name"],
				["unknown kind", { ...base, kind: "bogo" }, "kind"],
				["zero value", { ...base, value: 0 }, "value"],
				["fractional value", { ...base, kind: "fixed", value: 9.99 }, "value"],
				["over 100 percent", { ...base, value: 101 }, "value"],
				["minimum in another currency", { ...base, minCartTotal: { amount: 100, currency: "EUR" } }, "minCartTotal.currency"],
				["ends before it starts", { ...base, validFrom: "2030-02-01T00:00:00Z", validTo: "2030-01-01T00:00:00Z" }, "validTo"],
				["not a date", { ...base, validFrom: "next monday" }, "validFrom"],
				["usage limit without a code", { ...base, usageLimit: 5 }, "usageLimit"],
				["per-customer limit without a code", { ...base, perCustomerLimit: 1 }, "perCustomerLimit"],
				["a code with spaces", { ...base, code: "TEN OFF" }, "code"],
				["a code too short", { ...base, code: "AB" }, "code"],
				["a product that is not an id", { ...base, productIds: ["shoes"] }, "productIds.0"],
				["an unknown field", { ...base, stackable: true }, "stackable"],
				["zero usage limit", { ...base, code: newCode(), usageLimit: 0 }, "usageLimit"]
			] as const) {
				const err = await refusal(create(params));
				expect(err.code, what).to.equal(422);
				expect(err.data.map((d: any) => d.field), what).to.include(field);
			}
			const taken = await refusal(create({ ...base, code: existing.code.toLowerCase() }));
			expect(taken).to.include({ code: 409, type: "PROMO_CODE_TAKEN" });
			for (const [what, params, code, field] of [
				["nothing to change", { id: existing.id }, 422, undefined],
				["unknown promotion", { id: randomUUID(), value: 5 }, 404, undefined],
				["fixed 500 becoming 500 percent", { id: existing.id, kind: "percentage" }, 422, "value"],
				["the code itself", { id: existing.id, code: "OTHER" }, 422, "code"]
			] as const) {
				const err = await refusal(shop.call("promotions.update", params, admin));
				expect(err.code, what).to.equal(code);
				if (field) expect(err.data.map((d: any) => d.field), what).to.include(field);
			}
			expect(await snapshot()).to.deep.equal(before);
			const auto = await create({ name: "Auto", kind: "fixed", value: 100, productIds: [randomUUID()] });
			const beforeAuto = await snapshot();
			const limited = await refusal(shop.call("promotions.update", { id: auto.id, usageLimit: 3 }, admin));
			expect(limited.code).to.equal(422);
			expect(limited.data.map((d: any) => d.field)).to.include("usageLimit");
			expect(await snapshot()).to.deep.equal(beforeAuto);
		});
	});

	describe("evaluate", () => {
		it("the best automatic promotion plus a code (any case), each on its own lines; nothing changes", async () => {
			const [shoes, hat, sock] = [randomUUID(), randomUUID(), randomUUID()];
			const category = randomUUID();
			await create({ name: "Shoe week", kind: "percentage", value: 20, productIds: [shoes] });
			const better = await create({ name: "Hat and socks", kind: "fixed", value: 3000, productIds: [hat], categoryIds: [category] });
			const code = await create({ name: "Ten off", code: newCode(), kind: "percentage", value: 10, productIds: [shoes, hat, sock] });
			const lines = [line(shoes, 1, 10000), line(hat, 2, 2500), line(sock, 1, 1000, category)];
			const before = await snapshot();
			const r = await shop.call("promotions.evaluate", { lines, currency: "PLN", code: code.code.toLowerCase(), customerId: randomUUID() });
			// Shoe week would give 2000, Hat and socks 3000 (spread over hat 5000 and sock 1000): the better one wins.
			expect(r.promotions.map((p: any) => [p.promotionId, p.discount.amount])).to.deep.equal([[better.id, 3000], [code.id, 1300]]);
			expect(r).to.deep.include({ codeStatus: "applied", subtotal: PLN(16000), discount: PLN(4300), total: PLN(11700) });
			expect(r.lineDiscounts).to.deep.equal([{ productId: shoes, amount: 1000 }, { productId: hat, amount: 2500 + 250 }, { productId: sock, amount: 500 + 50 }]);
			expect(r.promotions[1]).to.include({ code: code.code, name: "Ten off", kind: "percentage", value: 10 });
			expect(await snapshot()).to.deep.equal(before);
		});

		it("answers the code's status instead of refusing, and refuses lines in another currency", async () => {
			const product = randomUUID();
			const lines = [line(product, 1, 1000)];
			expect((await shop.call("promotions.evaluate", { lines, currency: "PLN", code: "NO-SUCH-CODE" })).codeStatus).to.equal("unknown");
			const old = await create({ name: "Old", code: newCode(), kind: "fixed", value: 100, validFrom: "2020-01-01T00:00:00Z", validTo: "2020-02-01T00:00:00Z" });
			expect((await shop.call("promotions.evaluate", { lines, currency: "PLN", code: old.code })).codeStatus).to.equal("expired");
			const big = await create({ name: "Big carts", code: newCode(), kind: "fixed", value: 100, minCartTotal: PLN(5000) });
			const r = await shop.call("promotions.evaluate", { lines, currency: "PLN", code: big.code });
			expect(r).to.deep.include({ codeStatus: "not_applicable", discount: PLN(0), promotions: [] });
			const err = await refusal(shop.call("promotions.evaluate", { lines: [line(product, 1, 1000), { productId: product, quantity: 1, unitPrice: { amount: 5, currency: "EUR" } }], currency: "PLN" }));
			expect(err.code).to.equal(422);
			expect(err.data.map((d: any) => d.field)).to.deep.equal(["lines.1.unitPrice.currency"]);
			const zero = await refusal(shop.call("promotions.evaluate", { lines: [line(product, 0, 1000)], currency: "PLN" }));
			expect(zero.data.map((d: any) => d.field)).to.include("lines.0.quantity");
		});
	});

	describe("the checkout's promotions", () => {
		it("applyCode records code_applied and applied; a recalculation records only what changed; removeCode records removed", async () => {
			const [a, b] = [randomUUID(), randomUUID()];
			const auto = await create({ name: "A-week", kind: "percentage", value: 10, productIds: [a] });
			const code = await create({ name: "B-code", code: newCode(), kind: "fixed", value: 500, productIds: [b] });
			const checkoutId = randomUUID();
			const lines = [line(a, 1, 10000), line(b, 1, 2000)];
			const applied = await shop.call("promotions.applyCode", { checkoutId, lines, currency: "PLN", code: code.code.toLowerCase() });
			expect(applied).to.deep.include({ checkoutId, codeStatus: "applied", discount: PLN(1500) });
			const codeApplied = await shop.events.waitFor("promotion.code_applied", e => e.aggregate_id === checkoutId);
			expect(codeApplied.payload).to.deep.equal({ checkoutId, code: code.code, promotionId: code.id, discount: PLN(500) });
			await shop.events.waitFor("promotion.applied", e => e.aggregate_id === checkoutId && (e.payload as any).promotionId === auto.id);
			const codeEvent = await shop.events.waitFor("promotion.applied", e => e.aggregate_id === checkoutId && (e.payload as any).promotionId === code.id);
			expect(codeEvent.payload).to.deep.include({ name: "B-code", code: code.code, kind: "fixed", value: 500, discount: PLN(500) });

			// The same cart again: nothing new to say.
			const outbox = await count("outbox");
			await shop.call("promotions.recalculate", { checkoutId, lines, currency: "PLN", code: code.code });
			expect(await count("outbox")).to.equal(outbox);

			// Two units of a: the automatic promotion's discount changes.
			await shop.call("promotions.recalculate", { checkoutId, lines: [line(a, 2, 10000), line(b, 1, 2000)], currency: "PLN", code: code.code });
			const bigger = await shop.events.waitFor("promotion.applied", e => e.aggregate_id === checkoutId && (e.payload as any).discount.amount === 2000);
			expect((bigger.payload as any).promotionId).to.equal(auto.id);

			const removed = await shop.call("promotions.removeCode", { checkoutId, lines: [line(a, 2, 10000), line(b, 1, 2000)], currency: "PLN" });
			expect(removed.promotions.map((p: any) => p.promotionId)).to.deep.equal([auto.id]);
			const gone = await shop.events.waitFor("promotion.removed", e => e.aggregate_id === checkoutId);
			expect(gone.payload).to.deep.equal({ checkoutId, promotionId: code.id, code: code.code });
			expect(shop.events.of("promotion.removed", checkoutId)).to.have.length(1);
			expect(await t("checkout_promotions").where({ checkout_id: checkoutId }).pluck("promotion_id")).to.deep.equal([auto.id]);
		});

		it("applyCode refuses an unknown, expired, inapplicable or used-up code, and records nothing", async () => {
			const product = randomUUID();
			const lines = [line(product, 1, 1000)];
			const expired = await create({ name: "Gone", code: newCode(), kind: "fixed", value: 100, validTo: "2021-01-01T00:00:00Z" });
			const elsewhere = await create({ name: "Elsewhere", code: newCode(), kind: "fixed", value: 100, productIds: [randomUUID()] });
			const once = await create({ name: "Once", code: newCode(), kind: "fixed", value: 100, usageLimit: 1 });
			await shop.call("promotions.redeem", { orderId: randomUUID(), customerId: randomUUID(), code: once.code });
			const mine = await create({ name: "Mine", code: newCode(), kind: "fixed", value: 100, perCustomerLimit: 1 });
			const customerId = randomUUID();
			await shop.call("promotions.redeem", { orderId: randomUUID(), customerId, code: mine.code });
			const checkoutId = randomUUID();
			const before = await snapshot();
			for (const [what, code, status, type, codeStatus] of [
				["unknown", "NOPE-NOPE", 422, "PROMO_CODE_INVALID", "unknown"],
				["expired", expired.code, 422, "PROMO_CODE_INVALID", "expired"],
				["for other products", elsewhere.code, 422, "PROMO_CODE_INVALID", "not_applicable"],
				["used up", once.code, 409, "PROMO_CODE_USED_UP", "used_up"],
				["used up by this customer", mine.code, 409, "PROMO_CODE_USED_UP", "used_up"]
			] as const) {
				const err = await refusal(shop.call("promotions.applyCode", { checkoutId, customerId, lines, currency: "PLN", code }));
				expect(err, what).to.include({ code: status, type });
				expect(err.data.codeStatus, what).to.equal(codeStatus);
			}
			expect(await snapshot()).to.deep.equal(before);
		});
	});

	describe("redeem and release", () => {
		it("redeem takes one use per order, however often it is asked; release gives it back once", async () => {
			const code = await create({ name: "Redeem", code: newCode(), kind: "fixed", value: 100, usageLimit: 10 });
			const orderId = randomUUID();
			const customerId = randomUUID();
			const first = await shop.call("promotions.redeem", { orderId, customerId, code: code.code.toLowerCase(), idempotencyKey: `saga-${orderId}:redeem` });
			expect(first).to.deep.include({ orderId, promotionId: code.id, code: code.code });
			expect(await shop.call("promotions.redeem", { orderId, customerId, code: code.code, idempotencyKey: `saga-${orderId}:redeem` })).to.deep.equal(first);
			expect(await shop.call("promotions.redeem", { orderId, customerId, code: code.code, idempotencyKey: "another-key" })).to.deep.equal(first);
			expect(await shop.call("promotions.redeem", { orderId, customerId, code: code.code })).to.deep.equal(first);
			expect((await shop.call("promotions.get", { id: code.id })).uses).to.equal(1);
			const redeemed = await shop.events.waitFor("promotion.redeemed", e => e.aggregate_id === orderId);
			expect(redeemed.payload).to.deep.equal({ orderId, customerId, promotionId: code.id, code: code.code, redemptionId: first.redemptionId });

			const released = await shop.call("promotions.release", { orderId, reason: "payment failed", idempotencyKey: `saga-${orderId}:redeem:compensate` });
			expect(released).to.deep.equal({ orderId, released: true, status: "released", redemptionId: first.redemptionId, promotionId: code.id });
			expect(await shop.call("promotions.release", { orderId, idempotencyKey: `saga-${orderId}:redeem:compensate` })).to.deep.equal(released);
			expect(await shop.call("promotions.release", { orderId, idempotencyKey: "cancel-key" })).to.deep.equal(released);
			expect((await shop.call("promotions.get", { id: code.id })).uses).to.equal(0);
			await shop.events.waitFor("promotion.released", e => e.aggregate_id === orderId);
			await new Promise(r => setTimeout(r, 300));
			expect(shop.events.of("promotion.redeemed", orderId)).to.have.length(1);
			expect(shop.events.of("promotion.released", orderId)).to.have.length(1);

			// A released order never redeems again (a late redeem after its compensation).
			const before = await snapshot();
			const late = await refusal(shop.call("promotions.redeem", { orderId, customerId, code: code.code, idempotencyKey: "late" }));
			expect(late).to.include({ code: 409, type: "INVALID_TRANSITION" });
			expect(await snapshot()).to.deep.equal(before);
		});

		it("release before any redeem is a no-op that bars a later redeem of that order", async () => {
			const code = await create({ name: "Early", code: newCode(), kind: "fixed", value: 100 });
			const orderId = randomUUID();
			expect(await shop.call("promotions.release", { orderId })).to.deep.equal({ orderId, released: false, status: "none", redemptionId: null, promotionId: null });
			expect(await shop.call("promotions.release", { orderId })).to.deep.equal({ orderId, released: false, status: "none", redemptionId: null, promotionId: null });
			const err = await refusal(shop.call("promotions.redeem", { orderId, customerId: randomUUID(), code: code.code }));
			expect(err).to.include({ code: 409, type: "INVALID_TRANSITION" });
			expect((await shop.call("promotions.get", { id: code.id })).uses).to.equal(0);
			expect(shop.events.of("promotion.released", orderId)).to.have.length(0);
		});

		it("redeem refuses unknown, expired, used-up and per-customer-used-up codes, a second code for an order, and bad input — changing nothing", async () => {
			const expired = await create({ name: "Expired", code: newCode(), kind: "fixed", value: 100, validTo: "2021-01-01T00:00:00Z" });
			const later = await create({ name: "Later", code: newCode(), kind: "fixed", value: 100, validFrom: "2099-01-01T00:00:00Z" });
			const off = await create({ name: "Off", code: newCode(), kind: "fixed", value: 100, active: false });
			const once = await create({ name: "Once", code: newCode(), kind: "fixed", value: 100, usageLimit: 1 });
			const perCustomer = await create({ name: "Per customer", code: newCode(), kind: "fixed", value: 100, perCustomerLimit: 2 });
			const customerId = randomUUID();
			const held = randomUUID();
			await shop.call("promotions.redeem", { orderId: held, customerId, code: once.code });
			await shop.call("promotions.redeem", { orderId: randomUUID(), customerId, code: perCustomer.code });
			await shop.call("promotions.redeem", { orderId: randomUUID(), customerId, code: perCustomer.code });
			const before = await snapshot();
			for (const [what, params, status, type] of [
				["unknown code", { code: "NOPE-NOPE" }, 409, "PROMO_CODE_INVALID"],
				["expired code", { code: expired.code }, 409, "PROMO_CODE_INVALID"],
				["not yet valid", { code: later.code }, 409, "PROMO_CODE_INVALID"],
				["deactivated", { code: off.code }, 409, "PROMO_CODE_INVALID"],
				["used up", { code: once.code, customerId: randomUUID() }, 409, "PROMO_CODE_USED_UP"],
				["used up by this customer", { code: perCustomer.code }, 409, "PROMO_CODE_USED_UP"],
				["another code for an order that holds one", { code: perCustomer.code, orderId: held, customerId: randomUUID() }, 409, "INVALID_TRANSITION"],
				["no customer", { code: once.code, customerId: undefined }, 422, "VALIDATION_ERROR"],
				["order id not a uuid", { code: once.code, orderId: "42" }, 422, "VALIDATION_ERROR"]
			] as const) {
				const params2: Record<string, unknown> = { orderId: randomUUID(), customerId, ...params };
				if (params2.customerId === undefined) delete params2.customerId;
				const err = await refusal(shop.call("promotions.redeem", params2));
				expect(err, what).to.include({ code: status, type });
			}
			expect(await snapshot()).to.deep.equal(before);
			// A refusal under a key is the answer for that key.
			const key = `k-${randomUUID()}`;
			const a = await refusal(shop.call("promotions.redeem", { orderId: randomUUID(), customerId, code: once.code, idempotencyKey: key }));
			const b = await refusal(shop.call("promotions.redeem", { orderId: randomUUID(), customerId, code: once.code, idempotencyKey: key }));
			expect([a.type, b.type]).to.deep.equal(["PROMO_CODE_USED_UP", "PROMO_CODE_USED_UP"]);
		});

		it("a code with 5 uses left: 20 concurrent redeems over both replicas give exactly 5, the rest 409 PROMO_CODE_USED_UP", async () => {
			const code = await create({ name: "Race", code: newCode(), kind: "percentage", value: 50, usageLimit: 7 });
			await shop.call("promotions.redeem", { orderId: randomUUID(), customerId: randomUUID(), code: code.code });
			await shop.call("promotions.redeem", { orderId: randomUUID(), customerId: randomUUID(), code: code.code });
			expect((await shop.call("promotions.get", { id: code.id })).uses).to.equal(2); // 5 of 7 left

			const perNode = shop.cluster.brokers.slice(1).map(b => countCalls(b, "promotions.redeem"));
			const orders = Array.from({ length: 20 }, () => randomUUID());
			const answers = await Promise.all(
				orders.map(orderId =>
					shop.call("promotions.redeem", { orderId, customerId: randomUUID(), code: code.code, idempotencyKey: `${orderId}:redeemPromotion` }).then(
						r => ({ ok: true as const, r }),
						e => ({ ok: false as const, e })
					)
				)
			);
			perNode.forEach(c => c.restore());
			const won = answers.filter(a => a.ok);
			const lost = answers.filter(a => !a.ok) as Array<{ ok: false; e: any }>;
			expect(won).to.have.length(5);
			expect(lost.map(l => [l.e.code, l.e.type])).to.deep.equal(Array.from({ length: 15 }, () => [409, "PROMO_CODE_USED_UP"]));
			// RabbitMQ spread the calls over both replicas: the row lock, not one process, kept the count.
			expect(perNode.map(c => c.count > 0), `calls per replica ${perNode.map(c => c.count)}`).to.deep.equal([true, true]);
			expect((await shop.call("promotions.get", { id: code.id })).uses).to.equal(7);
			expect(await t("redemptions").where({ promotion_id: code.id, status: "redeemed" }).count<{ n: string }[]>("* as n").then(r => Number(r[0]!.n))).to.equal(7);

			// A compensated order gives its use back: exactly one more order gets it.
			const winner = orders[answers.findIndex(a => a.ok)]!;
			await shop.call("promotions.release", { orderId: winner, idempotencyKey: `${winner}:redeemPromotion:compensate` });
			const again = await Promise.all(Array.from({ length: 4 }, () => shop.call("promotions.redeem", { orderId: randomUUID(), customerId: randomUUID(), code: code.code }).then(() => true, () => false)));
			expect(again.filter(Boolean)).to.have.length(1);
			expect((await shop.call("promotions.get", { id: code.id })).uses).to.equal(7);
		});

		it("a redeem of a code without a total limit does not wait for the code's row: a popular code is not one lock every checkout queues for", async () => {
			const code = await create({ name: "Popular", code: newCode(), kind: "percentage", value: 10 });
			// Another transaction holds the code's row as an UPDATE of it does (as every redeem's
			// increment did, until its commit). The redemption's foreign key still reads the row, with
			// a key-share lock, which an update's lock does not block.
			const holder = await shop.db.transaction();
			try {
				await holder.withSchema(schema).table("promotions").where({ id: code.id }).forNoKeyUpdate().first();
				const answers = await Promise.race([
					Promise.all(Array.from({ length: 3 }, () => shop.call("promotions.redeem", { orderId: randomUUID(), customerId: randomUUID(), code: code.code }))),
					new Promise<"waited">(r => setTimeout(() => r("waited"), 5_000))
				]);
				expect(answers, "the redeems waited for the row lock").not.to.equal("waited");
			} finally {
				await holder.rollback();
			}
			// Its uses are its redemptions: three, one released.
			const orderId = randomUUID();
			await shop.call("promotions.redeem", { orderId, customerId: randomUUID(), code: code.code });
			await shop.call("promotions.release", { orderId });
			expect((await shop.call("promotions.get", { id: code.id })).uses).to.equal(3);
			const listed = await shop.call("promotions.list", { code: code.code }, admin);
			expect(listed.rows[0].uses).to.equal(3);
		});

		it("a total limit set on a code already in use counts the uses it has; removing it again keeps counting", async () => {
			const code = await create({ name: "Later limited", code: newCode(), kind: "fixed", value: 100 });
			for (let i = 0; i < 2; i++) await shop.call("promotions.redeem", { orderId: randomUUID(), customerId: randomUUID(), code: code.code });
			const limited = await shop.call("promotions.update", { id: code.id, usageLimit: 3 }, admin);
			expect(limited).to.deep.include({ usageLimit: 3, uses: 2 });
			const released = randomUUID();
			await shop.call("promotions.redeem", { orderId: released, customerId: randomUUID(), code: code.code });
			const used = await refusal(shop.call("promotions.redeem", { orderId: randomUUID(), customerId: randomUUID(), code: code.code }));
			expect(used).to.include({ code: 409, type: "PROMO_CODE_USED_UP" });
			await shop.call("promotions.release", { orderId: released });
			expect((await shop.call("promotions.get", { id: code.id })).uses).to.equal(2);
			const unlimited = await shop.call("promotions.update", { id: code.id, usageLimit: null }, admin);
			expect(unlimited).to.deep.include({ usageLimit: null, uses: 2 });
			for (let i = 0; i < 2; i++) await shop.call("promotions.redeem", { orderId: randomUUID(), customerId: randomUUID(), code: code.code });
			expect((await shop.call("promotions.get", { id: code.id })).uses).to.equal(4);
			expect(await shop.call("promotions.update", { id: code.id, usageLimit: 4 }, admin)).to.deep.include({ usageLimit: 4, uses: 4 });
			expect(await refusal(shop.call("promotions.redeem", { orderId: randomUUID(), customerId: randomUUID(), code: code.code }))).to.include({ type: "PROMO_CODE_USED_UP" });
		});

		it("one customer placing 10 orders at once with a once-per-customer code gets it once", async () => {
			const code = await create({ name: "Welcome", code: newCode(), kind: "fixed", value: 1000, perCustomerLimit: 1 });
			const customerId = randomUUID();
			const answers = await Promise.all(
				Array.from({ length: 10 }, () => shop.call("promotions.redeem", { orderId: randomUUID(), customerId, code: code.code }).then(() => "ok", e => e.type))
			);
			expect(answers.filter(a => a === "ok")).to.have.length(1);
			expect(answers.filter(a => a === "PROMO_CODE_USED_UP")).to.have.length(9);
			expect((await shop.call("promotions.get", { id: code.id })).uses).to.equal(1);
			// Another customer still may.
			await shop.call("promotions.redeem", { orderId: randomUUID(), customerId: randomUUID(), code: code.code });
		});
	});
});
