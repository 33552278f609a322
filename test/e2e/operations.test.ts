/**
 * What an operator does with the running system: the REPL's `order` on a real order while its
 * saga waits for PayPal and after it ended, `dlq` / `dlq replay` on a message that poisoned a
 * consumer, the same dead letters over HTTP (a second replay changes nothing), and `GET /metrics`
 * with the saga counters after a checkout and a compensation. Real RabbitMQ, Postgres, Redis;
 * the REPL is a process of its own that joins the cluster, as `npm run repl` does.
 */
import { expect } from "chai";
import { ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { operatorCommands } from "../../bin/repl-commands";
import type { EventEnvelope } from "../../contracts/events";
import { Cluster, eventually, startCluster } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { gatewayOf } from "../support/payments";
import { adminLogin, CARDS, finishedSaga, productInStock, readyCheckout, verifiedCustomer } from "../support/shop";

const root = path.join(__dirname, "..", "..");
/** Our channels adapter records why a message was dead-lettered (the package's own records only where from). */
const ERRORS_RECORDED = fs.existsSync(path.join(root, "infra", "amqp-channels.ts"));
const PAYPAL = { returnUrl: "https://shop.example/paypal/back", cancelUrl: "https://shop.example/paypal/cancelled" };

/** `npm run repl` as a process: commands in on stdin, their answers read from stdout. */
class Repl {
	child: ChildProcess;
	out = "";
	constructor() {
		this.child = spawn(process.execPath, ["--import", "tsx", "bin/repl.ts"], {
			cwd: root,
			env: { ...process.env, SERVICES: "", NODE_ID: `${process.env.TEST_RUN_ID}-repl-${Date.now().toString(36)}` },
			stdio: ["pipe", "pipe", "pipe"]
		});
		this.child.stdout!.on("data", b => (this.out += b.toString()));
		this.child.stderr!.on("data", b => (this.out += b.toString()));
	}
	/** Types a command and answers what it printed, once `until` shows up in it. */
	async run(command: string, until: RegExp, timeoutMs = 30_000): Promise<string> {
		await eventually(() => this.out.includes("mol $"), 60_000, `the REPL's prompt (output so far: ${this.out.slice(-500)})`);
		const from = this.out.length;
		this.child.stdin!.write(command + "\n");
		await eventually(() => until.test(this.out.slice(from)), timeoutMs, `'${command}' to print ${until} (got: ${this.out.slice(from, from + 2000)})`);
		return this.out.slice(from);
	}
	stop(): Promise<void> {
		return new Promise(resolve => {
			if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
			this.child.once("exit", () => resolve());
			this.child.kill("SIGTERM");
		});
	}
}

describe("operators: the REPL's order and dlq, dead letters over HTTP, /metrics (real RabbitMQ, Postgres, Redis)", function () {
	this.timeout(240_000);
	let cluster: Cluster;
	let http: Http;
	let admin: string;
	let methodId: string;
	let repl: Repl | null = null;
	/** A consumer of order.confirmed that fails for the customers in `poisoned`, and counts each order's effect once (its inbox). */
	const probe = { poisoned: new Set<string>(), handled: new Set<string>(), effects: new Map<string, number>() };
	const probeQueue = () => `poison-probe.${process.env.NAMESPACE}.order.confirmed`;

	before(async () => {
		cluster = await startCluster([["api", "ops"], ["customers", "notifications", "catalog", "inventory", "carts"], ["orders", "payments", "shipping", "promotions", "addons"], ["checkout"]]);
		http = gatewayOf(cluster);
		admin = await adminLogin(http);
		methodId = expectStatus(
			await http.post("/api/admin/shipping-methods", { name: `Van ${randomUUID().slice(0, 6)}`, carrier: "Shop van", price: { amount: 1500, currency: "PLN" }, countries: ["PL"], deliveryDays: { min: 1, max: 6 } }, admin),
			201
		).id;
		cluster.broker.createService({
			name: "poison-probe",
			channels: {
				"order.confirmed": {
					group: "poison-probe",
					async handler(env: EventEnvelope<any>) {
						if (probe.poisoned.has(env.payload?.customerId)) throw new Error(`probe is broken for ${env.aggregate_id}`);
						if (probe.handled.has(env.event_id)) return; // handled already: dropped, as an inbox does
						probe.handled.add(env.event_id);
						probe.effects.set(env.aggregate_id, (probe.effects.get(env.aggregate_id) ?? 0) + 1);
					}
				}
			}
		} as any);
		await cluster.broker.waitForServices("poison-probe");
		await new Promise(r => setTimeout(r, 500)); // its queue is declared asynchronously
	});
	after(async () => {
		await repl?.stop();
		await cluster?.stop();
	});

	/** A verified customer with one product in the cart, checkout ready for `method`. */
	async function shopper(method: "card" | "paypal") {
		const p = await productInStock(http, admin, { stock: 5, price: 5000 });
		const c = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, c.token), 200);
		await readyCheckout(http, c.token, { paymentMethod: method, methodId });
		return { p, c };
	}

	/** What the REPL's `order` prints, run in this process through the same command the REPL registers. */
	async function orderCommand(order: string): Promise<string> {
		let printed = "";
		const cmd = operatorCommands(text => (printed += text + "\n")).find(c => c.command.startsWith("order"))!;
		await cmd.action(cluster.broker, { rawCommand: `order ${order}` });
		return printed;
	}

	it("order <number>: mid-saga it shows the wait for PayPal, the held stock and the correlation id; after the buyer cancelled, the compensation and its events", async () => {
		const { p, c } = await shopper("paypal");
		const correlationId = `ops-test-${randomUUID()}`;
		const placed = expectStatus(await http.request("POST", "/api/checkout/place", { body: { paymentDetails: PAYPAL }, token: c.token, headers: { "x-correlation-id": correlationId } }), 202);
		expect(placed.status).to.equal("awaiting_payment");

		const during = await orderCommand(placed.orderNumber);
		expect(during).to.contain(`order ${placed.orderNumber} (${placed.orderId}) · awaiting_payment`);
		expect(during).to.contain(`correlation id ${correlationId}`);
		expect(during).to.match(/place-order\s+running\s+awaiting_authorize_payment \(waiting\)/);
		expect(during).to.contain("waiting for payment.authorized");
		expect(during).to.contain("payment: paypal pending");
		expect(during).to.contain(`reservation: ${p.sku} × 1 held`);
		expect(during).to.match(/order\.placed\s+orders/);

		const back = await fetch(`${http.baseUrl}/api/payments/paypal/cancel?token=${encodeURIComponent(placed.payment.transactionId)}`, { redirect: "manual" });
		expect(back.status).to.equal(302);
		expect((await finishedSaga(http, admin, placed.checkout.sagaId)).status).to.equal("compensated");

		const after = await eventually(async () => {
			const text = await orderCommand(placed.orderId); // by id this time
			return /checkout\.failed/.test(text) ? text : null;
		}, 20_000, "checkout.failed among the order's events");
		expect(after).to.contain(`order ${placed.orderNumber} (${placed.orderId}) · payment_failed`);
		expect(after).to.match(/place-order\s+compensated\s+compensated/);
		expect(after).to.contain(`reservation: ${p.sku} × 1 released`);
		expect(after).to.match(/inventory\.released\s+inventory/);
		expect(after).to.contain(correlationId);
		// The same answer over the action for anything else that asks, and an unknown order is a 404.
		expect(await orderCommand("SC-1999-999999")).to.match(/^404 NOT_FOUND/);
		void c;
	});

	it("after a checkout and a compensation, /metrics counts the sagas per type and times their steps", async () => {
		const { c } = await shopper("card");
		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
		expect((await finishedSaga(http, admin, placed.checkout.sagaId)).status).to.equal("completed");
		expect((await http.get("/api/orders")).status).to.equal(401);
		expect((await http.get("/api/no-such-route")).status).to.equal(404);
		const res = await fetch(`${http.baseUrl}/metrics`);
		expect(res.status).to.equal(200);
		expect(res.headers.get("content-type")).to.match(/^text\/plain/);
		const text = await res.text();
		/** The sum over nodes of a sample `name{…labels…}`. */
		const value = (name: string, labels: Record<string, string>) =>
			text
				.split("\n")
				.filter(l => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)))
				.reduce((n, l) => n + Number(l.split(" ").pop()), 0);
		// This file's cluster has run two place-order sagas: the PayPal one compensated, this one completed.
		expect(value("saga_started_total", { type: "place-order" })).to.equal(2);
		expect(value("saga_completed_total", { type: "place-order" })).to.equal(1);
		expect(value("saga_compensated_total", { type: "place-order" })).to.equal(1);
		expect(value("saga_parked_total", { type: "place-order" })).to.equal(0);
		expect(text).to.contain("# TYPE saga_step_duration histogram");
		expect(value("saga_step_duration_count", { type: "place-order", step: "authorizePayment", phase: "forward", outcome: "ok" })).to.be.at.least(2);
		expect(value("saga_step_duration_count", { type: "place-order", step: "reserveStock", phase: "compensate", outcome: "ok" })).to.equal(1);
		expect(value("http_requests_total", { method: "POST", route: "/api/checkout/place", status: "202" })).to.equal(2);
		// Requests refused before an action ran are counted too: a missing token (401), a path no route takes (404).
		expect(value("http_requests_total", { method: "GET", route: "/api/orders", status: "401" })).to.equal(1);
		expect(value("http_requests_total", { method: "GET", route: "unmatched", status: "404" })).to.equal(1);
		// The reconciler's counters exist from the start (it had nothing to do here).
		for (const action of ["finished", "compensated", "cart_checked_out", "cart_unlocked", "failed"]) {
			expect(text).to.match(new RegExp(`^saga_reconciler_actions_total\\{action="${action}"[^}]*\\} 0$`, "m"));
		}
		expect(text).to.match(/^moleculer_request_total\{[^}]*action="orders\.create"[^}]*\} \d+/m);
		expect(text).to.match(/^outbox_backlog\{service="orders",nodeID="[^"]+"\} \d+/m);
		expect(text).to.match(/^moleculer_channels_messages_total\{/m);
	});

	it("a message that poisons a consumer is dead-lettered with where it failed; once fixed, a replay over HTTP succeeds and a second replay changes nothing", async () => {
		const { c } = await shopper("card");
		probe.poisoned.add(c.id);
		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
		expect((await finishedSaga(http, admin, placed.checkout.sagaId)).status).to.equal("completed");

		const row = await eventually(async () => {
			const list = expectStatus(await http.get("/api/admin/dead-letters", admin), 200);
			return list.rows.find((r: any) => r.aggregateId === placed.orderId);
		}, 60_000, "the dead letter");
		expect(row).to.include({ queue: probeQueue(), event: "order.confirmed" });
		if (ERRORS_RECORDED) expect(row.error.message).to.equal(`probe is broken for ${placed.orderId}`);
		expect(probe.effects.get(placed.orderId)).to.equal(undefined);
		expect((await http.get("/api/admin/dead-letters", undefined)).status).to.equal(401);
		expect((await http.post("/api/admin/dead-letters/replay", { ids: "not-a-list" }, admin)).status).to.equal(422);

		probe.poisoned.delete(c.id); // the fault is fixed
		const replayed = expectStatus(await http.post("/api/admin/dead-letters/replay", { queue: probeQueue(), ids: [row.id] }, admin), 200);
		expect(replayed.replayed.map((r: any) => r.id)).to.deep.equal([row.id]);
		await eventually(() => probe.effects.get(placed.orderId) === 1, 20_000, "the replayed message handled");
		const again = expectStatus(await http.post("/api/admin/dead-letters/replay", { queue: probeQueue(), ids: [row.id] }, admin), 200);
		expect(again.replayed).to.deep.equal([]);
		await new Promise(r => setTimeout(r, 1000));
		expect(probe.effects.get(placed.orderId)).to.equal(1);
		expect((expectStatus(await http.get("/api/admin/dead-letters", admin), 200).rows as any[]).filter(r => r.aggregateId === placed.orderId)).to.deep.equal([]);
	});

	it("the REPL process: order <number> of a completed order, dlq shows a poisoned message and dlq replay sends it back, and it succeeds", async () => {
		const { c } = await shopper("card");
		probe.poisoned.add(c.id);
		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
		expect((await finishedSaga(http, admin, placed.checkout.sagaId)).status).to.equal("completed");
		await eventually(async () => (await http.get("/api/admin/dead-letters", admin)).body.rows.some((r: any) => r.aggregateId === placed.orderId), 60_000, "the dead letter");

		repl = new Repl();
		const order = await repl.run(`order ${placed.orderNumber}`, /last events:[\s\S]*\n\n?/);
		expect(order).to.contain(`order ${placed.orderNumber} (${placed.orderId}) · confirmed`);
		expect(order).to.match(/place-order\s+completed\s+completed/);
		expect(order).to.contain("payment: card authorized");

		const dlq = await repl.run("dlq", /dead letter\(s\) in[\s\S]*order\.confirmed/);
		expect(dlq).to.contain(probeQueue());

		probe.poisoned.delete(c.id);
		const replay = await repl.run(`dlq replay ${probeQueue()}`, /replayed \d+ message/);
		expect(replay).to.match(new RegExp(`replayed 1 message\\(s\\): \\S+ → ${probeQueue().replace(/\./g, "\\.")}`));
		await eventually(() => probe.effects.get(placed.orderId) === 1, 20_000, "the replayed message handled");
		// Other test files of this worker may have left dead letters of their own: what matters is that
		// the replayed one, and so the probe's queue, is gone from the list.
		const replayedId = replay.match(/replayed 1 message\(s\): (\S+) →/)![1];
		const after = await repl.run("dlq", /dead letter\(s\) in/);
		expect(after).to.match(/^\d+ dead letter\(s\) in /m);
		expect(after).not.to.contain(replayedId);
		expect(after).not.to.contain(probeQueue());
	});
});
