/**
 * notifications on a real Moleculer node over RabbitMQ, log in Postgres: events are published
 * on their channels as the other services' relays would, and the delivery log is read through
 * `notifications.list` as the admin API does.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { envelope, EventEnvelope, EventName } from "../../contracts/events";
import { Cluster, EventRecorder, eventually, recordEvents, startCluster, refusal } from "../support/cluster";

const EVENTS = ["notification.sent", "notification.failed"];
const settle = () => new Promise(r => setTimeout(r, 800)); // a duplicate would have been handled by now
const newEmail = () => `n-${randomUUID().slice(0, 8)}@example.com`;

function verificationRequested(over: Record<string, unknown> = {}) {
	const customerId = randomUUID();
	return envelope("customer.verification_requested", customerId, {
		customerId, email: newEmail(), firstName: "Ada", token: randomUUID().replace(/-/g, ""), expiresAt: new Date(Date.now() + 86_400_000).toISOString(), ...over
	});
}

function orderConfirmed(over: Record<string, unknown> = {}) {
	const orderId = randomUUID();
	return envelope("order.confirmed", orderId, {
		orderId, orderNumber: `SC-2030-${String(Math.floor(Math.random() * 1e6)).padStart(6, "0")}`, customerId: randomUUID(),
		customerEmail: newEmail(), total: { amount: 12999, currency: "PLN" }, ...over
	});
}

function useCluster() {
	const ctx = {} as { cluster: Cluster; events: EventRecorder };
	before(async () => {
		ctx.cluster = await startCluster([[], ["notifications"]], { waitFor: ["notifications"] });
		ctx.events = await recordEvents(ctx.cluster.broker, EVENTS);
	});
	after(async () => {
		await ctx.cluster?.stop();
	});
	return ctx;
}

describe("notifications service (real RabbitMQ and Postgres)", function () {
	this.timeout(60_000);
	const t = useCluster();
	const call = <T = any>(action: string, params?: any, meta?: any) => t.cluster.call<T>(action, params, meta);
	const publish = (env: EventEnvelope) => (t.cluster.broker as any).sendToChannel(env.event_name as EventName, env);
	const logOf = (to: string, extra: Record<string, unknown> = {}) => call("notifications.list", { to, ...extra });
	const delivered = (to: string, count = 1) =>
		eventually(async () => {
			const log = await logOf(to);
			return log.total >= count ? log : null;
		}, 15_000, `${count} message(s) to ${to}`);

	describe("customer.verification_requested", () => {
		it("becomes one verification email in the log, with the token in its text and data, and notification.sent", async () => {
			const env = verificationRequested();
			const p = env.payload as any;
			await publish(env);
			const { rows } = await delivered(p.email);
			const mail = rows[0];
			expect(mail).to.include({ channel: "email", to: p.email, template: "email_verification", status: "sent", subject: "Confirm your email address" });
			expect(mail).to.have.all.keys("id", "channel", "to", "template", "subject", "text", "html", "attempts", "status", "error", "createdAt", "data");
			expect(mail.html).to.include(`<code>${p.token}</code>`).and.include("<p>Hello Ada,</p>");
			expect(mail.data).to.deep.equal({ customerId: p.customerId, token: p.token });
			expect(mail.text).to.include("Hello Ada").and.include(p.token).and.include(`verify-email?token=${p.token}`);
			expect(new Date(mail.createdAt).getTime()).to.be.closeTo(Date.now(), 30_000);

			const sent = await t.events.waitFor("notification.sent", e => e.payload.notificationId === mail.id);
			expect(sent.payload).to.deep.equal({ notificationId: mail.id, channel: "email", to: p.email, template: "email_verification" });
			expect(sent.aggregate_id).to.equal(mail.id);
			expect(sent.causation_id).to.equal(env.event_id);
		});

		it("delivered three times, two of them at once, it still sends one email", async () => {
			const env = verificationRequested();
			const to = (env.payload as any).email;
			await Promise.all([publish(env), publish(env)]);
			await delivered(to);
			await publish(env);
			await settle();
			expect((await logOf(to)).total).to.equal(1);
			expect(t.events.of("notification.sent").filter(e => e.payload.to === to)).to.have.length(1);
		});

		it("an event without a usable address or token sends nothing and does not hold up the next one", async () => {
			const noToken = verificationRequested({ token: undefined });
			const badEmail = verificationRequested({ email: "not-an-email" });
			const good = verificationRequested();
			await publish(noToken);
			await publish(badEmail);
			await publish(good);
			await delivered((good.payload as any).email);
			await settle();
			expect((await logOf((noToken.payload as any).email)).total).to.equal(0);
			expect((await logOf("not-an-email")).total).to.equal(0);
		});
	});

	describe("order.confirmed", () => {
		it("sends order_confirmed to the order's email with its number and total", async () => {
			const env = orderConfirmed();
			const p = env.payload as any;
			await publish(env);
			await publish(env);
			const { rows } = await delivered(p.customerEmail);
			expect(rows[0]).to.include({ template: "order_confirmed", status: "sent", to: p.customerEmail, subject: `Order ${p.orderNumber} confirmed` });
			expect(rows[0].text).to.include(p.orderNumber).and.include("PLN 129.99");
			expect(rows[0].data).to.deep.equal({ orderId: p.orderId, orderNumber: p.orderNumber, customerId: p.customerId });
			await settle();
			expect((await logOf(p.customerEmail)).total).to.equal(1);
		});

		it("an order without a customer email sends nothing", async () => {
			const without = orderConfirmed({ customerEmail: null });
			await publish(without);
			const marker = orderConfirmed();
			await publish(marker);
			await delivered((marker.payload as any).customerEmail);
			await settle();
			const log = await call("notifications.list", { template: "order_confirmed", pageSize: 100 });
			expect(log.rows.filter((r: any) => r.data.orderId === (without.payload as any).orderId)).to.have.length(0);
		});
	});

	describe("list", () => {
		it("filters by recipient in any case and by template, newest first, page by page", async () => {
			const to = newEmail();
			const envs = [verificationRequested({ email: to }), orderConfirmed({ customerEmail: to }), verificationRequested({ email: to })];
			for (let i = 0; i < envs.length; i++) {
				await publish(envs[i]!);
				await delivered(to, i + 1); // one after the other, so the order is known
			}
			const all = await logOf(to.toUpperCase());
			expect(all.total).to.equal(3);
			expect(all.rows.map((r: any) => r.template)).to.deep.equal(["email_verification", "order_confirmed", "email_verification"]);
			expect(all.rows[0].data.token).to.equal((envs[2]!.payload as any).token);
			const times = all.rows.map((r: any) => new Date(r.createdAt).getTime());
			expect(times).to.deep.equal([...times].sort((a, b) => b - a));

			const verifications = await logOf(to, { template: "email_verification" });
			expect(verifications.total).to.equal(2);
			const page2 = await logOf(to, { page: 2, pageSize: 2 });
			expect(page2).to.include({ total: 3, page: 2, pageSize: 2 });
			expect(page2.rows.map((r: any) => r.id)).to.deep.equal([all.rows[2].id]);
			expect(await logOf(newEmail())).to.deep.equal({ rows: [], total: 0, page: 1, pageSize: 20 });
		});

		it("refuses a page size over 100 or an unknown filter with 422, and a customer with 403", async () => {
			expect((await refusal(call("notifications.list", { pageSize: 101 }))).code).to.equal(422);
			expect((await refusal(call("notifications.list", { status: "sent" }))).code).to.equal(422);
			const err = await refusal(call("notifications.list", {}, { user: { id: randomUUID(), role: "customer", email: "c@example.com" } }));
			expect(err.code).to.equal(403);
			const admin = await call("notifications.list", {}, { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } });
			expect(admin.total).to.be.greaterThan(0);
		});
	});
});

describe("notifications service when the mail server refuses connections", function () {
	this.timeout(60_000);
	let saved: string | undefined;
	before(() => {
		saved = process.env.SMTP_URL;
		process.env.SMTP_URL = "smtp://127.0.0.1:1"; // nothing listens there
	});
	const t = useCluster();
	after(() => {
		if (saved === undefined) delete process.env.SMTP_URL;
		else process.env.SMTP_URL = saved;
	});

	it("a message that cannot be sent is logged once as failed with the reason, and notification.failed is published", async () => {
		const env = verificationRequested();
		const to = (env.payload as any).email;
		await (t.cluster.broker as any).sendToChannel(env.event_name, env);
		const log = await eventually(async () => {
			const l = await t.cluster.call("notifications.list", { to });
			return l.total > 0 ? l : null;
		}, 20_000, "the failed delivery");
		const row = log.rows[0];
		expect(row).to.include({ status: "failed", template: "email_verification", to });
		expect(row.error).to.match(/ECONNREFUSED|connect/i);
		expect(row.attempts).to.equal(3);
		const failed = await t.events.waitFor("notification.failed", e => e.payload.notificationId === row.id);
		expect(failed.payload).to.include({ notificationId: row.id, channel: "email", to, template: "email_verification" });
		await settle();
		expect((await t.cluster.call<any>("notifications.list", { to })).total).to.equal(1);
	});
});

describe("notifications of orders, payments and carts (events as the other services publish them)", function () {
	this.timeout(60_000);
	const t = useCluster();
	const publish = (env: EventEnvelope) => (t.cluster.broker as any).sendToChannel(env.event_name as EventName, env);
	const logOf = (to: string, template?: string) => t.cluster.call<any>("notifications.list", { to, ...(template ? { template } : {}) });
	const one = (to: string, template: string) =>
		eventually(async () => (await logOf(to, template)).rows[0], 15_000, `${template} to ${to}`);

	async function placed() {
		const orderId = randomUUID();
		const customerId = randomUUID();
		const email = newEmail();
		const env = envelope("order.placed", orderId, {
			orderId, orderNumber: `SC-2030-${String(Math.floor(Math.random() * 1e6)).padStart(6, "0")}`, customerId, customerEmail: email,
			lines: [
				{ productId: randomUUID(), sku: "MUG", name: "Mug <blue>", quantity: 2, unitPrice: { amount: 2500, currency: "PLN" }, lineTotal: { amount: 5000, currency: "PLN" } },
				{ productId: randomUUID(), sku: "LAMP", name: "Lamp", quantity: 1, unitPrice: { amount: 7999, currency: "PLN" }, lineTotal: { amount: 7999, currency: "PLN" } }
			],
			total: { amount: 12999, currency: "PLN" }
		});
		await publish(env);
		return { env, orderId, customerId, email, orderNumber: (env.payload as any).orderNumber as string };
	}

	it("order.placed: one email with every line and the total, in text and HTML (escaped), even when the event comes three times", async () => {
		const o = await placed();
		await publish(o.env);
		const mail = await one(o.email, "order_placed");
		expect(mail.subject).to.equal(`We received your order ${o.orderNumber}`);
		expect(mail.text).to.include("2 × Mug <blue>  PLN 25.00  = PLN 50.00").and.include("1 × Lamp").and.include("Total: PLN 129.99");
		expect(mail.html).to.include("Mug &lt;blue&gt;").and.include("<strong>Total: PLN 129.99</strong>");
		await publish(o.env);
		await settle();
		expect((await logOf(o.email, "order_placed")).total).to.equal(1);
	});

	it("payment failed, shipped, cancelled and refunded each reach the order's customer, addressed from order.placed", async () => {
		const o = await placed();
		await one(o.email, "order_placed");
		await publish(envelope("payment.failed", randomUUID(), { paymentId: randomUUID(), orderId: o.orderId, amount: { amount: 12999, currency: "PLN" }, reason: "Card declined" }));
		await publish(envelope("order.shipped", o.orderId, { orderId: o.orderId, orderNumber: o.orderNumber, customerId: o.customerId, customerEmail: o.email, trackingNumber: "TRK-123", carrier: "DPD" }));
		await publish(envelope("order.cancelled", o.orderId, { orderId: o.orderId, orderNumber: o.orderNumber, customerId: o.customerId, reason: "customer asked", refundAmount: { amount: 12999, currency: "PLN" } }));
		await publish(envelope("payment.refunded", randomUUID(), { paymentId: randomUUID(), orderId: o.orderId, refundId: randomUUID(), refundAmount: { amount: 5000, currency: "PLN" }, reason: "damaged" }));
		expect((await one(o.email, "payment_failed")).text).to.include("PLN 129.99").and.include("Card declined").and.include(o.orderNumber);
		const shipped = await one(o.email, "order_shipped");
		expect(shipped.text).to.include("TRK-123").and.include("DPD");
		expect(shipped.data).to.include({ orderId: o.orderId, customerId: o.customerId });
		expect((await one(o.email, "order_cancelled")).text).to.include("customer asked").and.include("PLN 129.99 will be refunded");
		expect((await one(o.email, "refund_processed")).text).to.include("PLN 50.00").and.include("damaged");
	});

	it("cart.expired tells a registered customer, and nobody for a guest cart", async () => {
		const customerId = randomUUID();
		const email = newEmail();
		await publish(envelope("customer.registered", customerId, { customerId, email, firstName: "Grace", lastName: "Hopper" }));
		await settle();
		const cartId = randomUUID();
		await publish(envelope("cart.expired", cartId, { cartId, customerId, lastActivityDate: "2030-01-01T00:00:00.000Z", expiredAt: new Date().toISOString(), items: [{ sku: "a", quantity: 2 }] }));
		await publish(envelope("cart.expired", randomUUID(), { cartId: randomUUID(), customerId: null, lastActivityDate: "2030-01-01T00:00:00.000Z" }));
		const mail = await one(email, "cart_expired");
		expect(mail.text).to.include("Hello Grace").and.include("2030-01-01").and.include("2 items");
	});
});

describe("stock alerts to the product's vendor and the admins (catalog, inventory, notifications)", function () {
	this.timeout(90_000);
	let cluster: Cluster;
	const admin = { user: { id: randomUUID(), role: "admin", email: "admin@test.local" } };

	before(async () => {
		cluster = await startCluster([[], ["catalog", "inventory"], ["notifications"]]);
	});
	after(async () => cluster?.stop());

	const alerts = async (to: string, template: string) => (await cluster.call<any>("notifications.list", { to, template, pageSize: 100 })).rows;

	async function vendorProduct(phone: string | null, stock: number, threshold: number) {
		const vendor = await cluster.call("catalog.createVendor", { name: `Vendor ${randomUUID().slice(0, 8)}`, email: newEmail(), phone }, admin);
		const cat = await cluster.call("catalog.createCategory", { name: `Alerts ${randomUUID().slice(0, 8)}` }, admin);
		const p = await cluster.call("catalog.createProduct", { name: "Teapot", price: { amount: 3000, currency: "PLN" }, categoryId: cat.id, vendorId: vendor.id, initialStock: stock, lowStockThreshold: threshold }, admin);
		await eventually(() => cluster.call("inventory.get", { sku: p.sku }).catch(() => null), 15_000, "stock row");
		return { vendor, p };
	}
	const reserve = (sku: string, quantity: number) => cluster.call("inventory.reserve", { orderId: randomUUID(), lines: [{ sku, quantity }] });

	it("the vendor's low-stock email arrives exactly once when available stock falls below the threshold, and again only after it rose and fell again", async () => {
		const { vendor, p } = await vendorProduct(null, 10, 5);
		await reserve(p.sku, 5); // 5 available: at the threshold, no alert
		const first = await reserve(p.sku, 2); // 3 available: below
		await reserve(p.sku, 1); // 2 available: still below, no second alert
		const [mail] = await eventually(async () => {
			const rows = await alerts(vendor.email, "low_stock");
			return rows.length > 0 ? rows : null;
		}, 15_000, "the low-stock email");
		expect(mail).to.include({ subject: "Low stock: Teapot", channel: "email", status: "sent" });
		expect(mail.text).to.include("3 available").and.include("threshold of 5");
		expect((await alerts("admin@test.local", "low_stock")).some((r: any) => r.data.sku === p.sku)).to.equal(true);
		await settle();
		expect(await alerts(vendor.email, "low_stock")).to.have.length(1);

		await cluster.call("inventory.release", { orderId: first.orderId, reason: "cancelled" }); // 4: still below
		await cluster.call("inventory.adjust", { sku: p.sku, adjustment: 5, reason: "delivery" }, admin); // 9: above
		await settle();
		expect(await alerts(vendor.email, "low_stock")).to.have.length(1);
		await reserve(p.sku, 6); // 3: below again
		await eventually(async () => (await alerts(vendor.email, "low_stock")).length === 2, 15_000, "the second low-stock email");
		await settle();
		expect(await alerts(vendor.email, "low_stock")).to.have.length(2);
	});

	it("out of stock: email to the vendor and admins and an SMS to the vendor's phone; an unreachable phone is retried, then logged failed with notification.failed", async () => {
		const events = await recordEvents(cluster.broker, ["notification.sent", "notification.failed"], `obs-${randomUUID().slice(0, 6)}`);
		const ok = await vendorProduct("+48 600 000 111", 1, 0);
		await reserve(ok.p.sku, 1);
		const sms = await eventually(async () => (await cluster.call<any>("notifications.list", { to: "+48 600 000 111" })).rows[0], 15_000, "the SMS");
		expect(sms).to.include({ channel: "sms", template: "out_of_stock", status: "sent" });
		expect(sms.text).to.include("Teapot").and.include("out of stock");
		expect((await alerts(ok.vendor.email, "out_of_stock"))[0]).to.include({ status: "sent" });

		const unreachable = await vendorProduct("+999 123 456", 1, 0);
		await reserve(unreachable.p.sku, 1);
		const failed = await eventually(async () => (await cluster.call<any>("notifications.list", { to: "+999 123 456" })).rows[0], 20_000, "the failed SMS");
		expect(failed).to.include({ channel: "sms", status: "failed" });
		expect(failed.error).to.match(/unreachable/);
		expect(failed.attempts, "tried three times, with backoff").to.equal(3);
		await events.waitFor("notification.failed", e => (e.payload as any).notificationId === failed.id);
		expect((await alerts(unreachable.vendor.email, "out_of_stock"))[0]).to.include({ status: "sent" });
		await settle();
		expect((await cluster.call<any>("notifications.list", { to: "+999 123 456" })).total).to.equal(1);
	});
});
