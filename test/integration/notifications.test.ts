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
			expect(mail).to.have.all.keys("id", "channel", "to", "template", "subject", "text", "status", "error", "createdAt", "data");
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
		const failed = await t.events.waitFor("notification.failed", e => e.payload.notificationId === row.id);
		expect(failed.payload).to.include({ notificationId: row.id, channel: "email", to, template: "email_verification" });
		await settle();
		expect((await t.cluster.call<any>("notifications.list", { to })).total).to.equal(1);
	});
});
