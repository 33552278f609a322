/**
 * The crash matrix. For every step and compensation of place-order and cancel-order, and for
 * the payment wait, the orchestrator is SIGKILLed just before the step's command goes out and
 * just after its answer is recorded; separately, the participant that runs the command is
 * SIGKILLed just before it runs it and just after it committed (before it answered). The points
 * are generated from the saga definitions, so a new step is covered without touching this file.
 *
 * Every point is armed in every process at once (`CRASH_AT`, infra/crash.ts) and fires once per
 * run; a supervisor starts each killed process again, as a process manager would. Three
 * orchestrators and two replicas of each participant run, so another takes over while one
 * restarts. Four checkouts, one after the other, walk through every point: a card order with a
 * promo code (every forward step), a BLIK order (awaiting payment and the wait for the bank), a
 * declined card (every compensation), and the cancellation of the first order. Checked for each:
 * the saga ends as it would have without crashes, the client's retry with its key answers the
 * order, every point its saga passed fired; at the end the books balance.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Knex } from "knex";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import type { SagaDefinition } from "../../sagas";
import { cancelOrder } from "../../sagas/cancel-order.saga";
import { placeOrder } from "../../sagas/place-order.saga";
import { placeIds } from "../../services/checkout/place-ids";
import { checkBooks } from "../support/books";
import { eventually } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { freePort } from "../support/private-redis";
import { spawnServices, ServiceProcess } from "../support/processes";
import { writeReliabilityFigures } from "../support/reliability-doc";
import { adminLogin, CARDS, productInStock, readyCheckout, verifiedCustomer } from "../support/shop";

/** Every crash point of a saga definition: orchestrator and participant, forward and compensation. */
function crashPoints(def: SagaDefinition<any>): string[] {
	const points: string[] = [];
	for (const s of def.steps) {
		points.push(`${def.name}:${s.name}:forward:before`, `${def.name}:${s.name}:forward:after`, `action:${s.invoke.name}:before`, `action:${s.invoke.name}:after`);
		if (s.await) points.push(`${def.name}:${s.name}:wait`);
		if (s.compensate) points.push(`${def.name}:${s.name}:compensate:before`, `${def.name}:${s.name}:compensate:after`, `action:${s.compensate.name}:before`, `action:${s.compensate.name}:after`);
	}
	return points;
}

/** The points a finished saga passed, from its record: each step sent, each compensation made, and their participants. */
function pointsPassed(def: SagaDefinition<any>, rec: any): string[] {
	const points: string[] = [];
	for (const name of rec.completedSteps as string[]) {
		const s = def.stepNamed(name)!;
		points.push(`${def.name}:${name}:forward:before`, `action:${s.invoke.name}:before`, `action:${s.invoke.name}:after`);
		// A step refused or answered and recorded: its answer was recorded only when the saga went on past it.
		const refused = rec.failure?.step === name;
		// A waiting step (a BLIK or PayPal payment) was recorded as waiting; a card payment just as done.
		const waited = (rec.history as Array<{ event: string }>).some(h => h.event.startsWith(`${name} answered; waiting`));
		if (!refused) points.push(waited ? `${def.name}:${name}:wait` : `${def.name}:${name}:forward:after`);
	}
	for (const name of rec.compensatedSteps as string[]) {
		const s = def.stepNamed(name)!;
		points.push(`${def.name}:${name}:compensate:before`, `${def.name}:${name}:compensate:after`, `action:${s.compensate!.name}:before`, `action:${s.compensate!.name}:after`);
	}
	return [...new Set(points)];
}

/** Polls once a second (a storefront's pace, not a busy loop) until `probe` answers. */
async function pollUntil<T>(probe: () => Promise<T | null>, timeoutMs: number, what: string): Promise<T> {
	const until = Date.now() + timeoutMs;
	for (;;) {
		const v = await probe();
		if (v) return v;
		if (Date.now() > until) throw new Error(`Timed out waiting for ${what}`);
		await new Promise(r => setTimeout(r, 1000));
	}
}

const ALL_POINTS = [...new Set([...crashPoints(placeOrder), ...crashPoints(cancelOrder)])];

/** A process kept running: started again whenever it dies, until stopped. */
class Supervised {
	proc: ServiceProcess;
	restarts = 0;
	/** How each process ended that was not killed by a crash point (SIGKILL): exit code or signal, and its last lines. */
	readonly unexpected: string[] = [];
	private stopping = false;
	constructor(
		readonly services: string[],
		private env: Record<string, string>
	) {
		this.proc = this.spawn();
	}
	private spawn(): ServiceProcess {
		const proc = spawnServices(this.services, this.env);
		proc.child.once("exit", (code, signal) => {
			if (this.stopping) return;
			if (signal !== "SIGKILL") this.unexpected.push(`${this.services.join("+")} exited ${code ?? signal}: ${proc.output.join("").split("\n").slice(-8).join(" | ")}`);
			this.restarts++;
			this.proc = this.spawn();
		});
		return proc;
	}
	async stop() {
		this.stopping = true;
		await this.proc.kill("SIGKILL");
	}
}

describe("crash matrix: SIGKILL before and after every saga step and compensation, orchestrator and participant", function () {
	this.timeout(900_000);
	const markers = mkdtempSync(path.join(os.tmpdir(), "saga-crash-"));
	const processes: Supervised[] = [];
	let client: ServiceBroker;
	let http: Http;
	let admin: string;
	let db: Knex;
	let product: { id: string; sku: string };
	const STOCK = 50;
	const customers: string[] = [];
	const rows: string[] = [];
	const passed = new Set<string>();

	const fired = () => new Set(readdirSync(markers).map(f => f.replace(`crash-${process.env.NAMESPACE}-`, "")));
	const fileName = (point: string) => point.replace(/[^A-Za-z0-9._-]/g, "_");

	before(async () => {
		const port = String(await freePort());
		http = new Http(`http://127.0.0.1:${port}`);
		const env = {
			CRASH_AT: ALL_POINTS.join(","), CRASH_MARKER_DIR: markers,
			SAGA_LEASE_MS: "2000", SAGA_RECOVERY_INTERVAL_MS: "500", RECONCILE_INTERVAL_MS: "0",
			WEBHOOK_TARGET_URL: `http://127.0.0.1:${port}`, BLIK_ANSWER_DELAY_MS: "3000", PAYMENT_DEADLINE_MS: "30000"
		};
		const twice = (services: string[]) => [new Supervised(services, env), new Supervised(services, env)];
		processes.push(
			new Supervised(["api"], { ...env, PORT: port }),
			new Supervised(["customers", "notifications", "catalog", "shipping", "addons"], env),
			...twice(["carts"]), ...twice(["orders", "promotions"]), ...twice(["inventory"]), ...twice(["payments"]),
			new Supervised(["checkout"], env), new Supervised(["checkout"], env)
		);
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-crash-matrix-client` });
		await client.start();
		await client.waitForServices(["api", "checkout", "carts", "orders", "promotions", "inventory", "payments", "customers", "catalog", "shipping", "addons", "notifications"], 200_000);
		const { default: knexFactory } = await import("knex");
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL, pool: { min: 0, max: 2 } });
		admin = await adminLogin(http);
		product = await productInStock(http, admin, { stock: STOCK, price: 2000 });
	});

	after(async () => {
		const restarts = processes.map(p => `${p.services.join("+")}: ${p.restarts}`).join(", ");
		console.log(`\n      Crash matrix:\n${rows.map(r => `        ${r}`).join("\n")}\n        processes restarted: ${restarts}\n`);
		for (const p of processes) for (const u of p.unexpected) console.log(`        unexpected exit: ${u.slice(0, 2000)}`);
		if (rows.length) {
			writeReliabilityFigures("crash-matrix", `Last run (${new Date().toISOString().slice(0, 10)}): ${ALL_POINTS.length} crash points generated from the two saga definitions, ${fired().size} fired, each once; ${processes.reduce((n, p) => n + p.restarts, 0)} process restarts.

| checkout | saga ended | points its saga passed (all fired) | time to the end |
|---|---|---|---|
${rows.join("\n")}

Points never reached by these four checkouts (a step none of them runs): ${ALL_POINTS.filter(p => !passed.has(p)).join(", ") || "none"}.`);
		}
		await client?.stop().catch(() => undefined);
		await Promise.all(processes.map(p => p.stop()));
		await db?.destroy().catch(() => undefined);
		rmSync(markers, { recursive: true, force: true });
	});

	async function shopper(method: "card" | "blik", code?: string) {
		const c = await verifiedCustomer(http, admin);
		customers.push(c.id);
		expectStatus(await http.post("/api/cart/items", { productId: product.id, quantity: 2 }, c.token), 200);
		await readyCheckout(http, c.token, { paymentMethod: method });
		if (code) expectStatus(await http.post("/api/checkout/promo-code", { code }, c.token), 200);
		return c;
	}

	/** Places with a key, retrying as a storefront does, until the saga ended; answers the saga and the last answer. */
	async function placeThroughCrashes(c: { id: string; token: string }, paymentDetails: unknown) {
		const key = `crash-${randomUUID()}`;
		const started = Date.now();
		let last: any = null;
		const bad: string[] = [];
		const saga = await pollUntil(async () => {
			const a = await http.post("/api/checkout/place", { paymentDetails }, c.token, { "idempotency-key": key }).catch(() => null);
			if (!a) return null;
			if (![202, 503, 504].includes(a.status)) bad.push(`${a.status} ${JSON.stringify(a.body).slice(0, 200)}`);
			if (a.status !== 202) return null;
			last = a.body;
			const s = await http.get(`/api/admin/sagas/${a.body.checkout.sagaId}`, admin);
			return s.status === 200 && ["completed", "compensated", "parked"].includes(s.body.status) ? s.body : null;
		}, 240_000, "the saga to end through its crashes").catch(async err => {
			const s = last ? await http.get(`/api/admin/sagas/${last.checkout.sagaId}`, admin) : null;
			throw new Error(`${err.message}; saga now: ${JSON.stringify(s?.body ?? last).slice(0, 3000)}`);
		});
		expect(bad, "answers a storefront cannot act on").to.deep.equal([]);
		expect(last.orderId).to.equal(placeIds(c.id, key).orderId);
		// Once more with the key: the order as it ended.
		const again = expectStatus(await http.post("/api/checkout/place", { paymentDetails }, c.token, { "idempotency-key": key }), 202);
		return { saga, answer: again, ms: Date.now() - started };
	}

	/**
	 * A saga through its crashes ends completed or compensated, never parked or stuck, and the
	 * client's answer says the same. (Compensated is a right end too: while both replicas of a
	 * participant restart, a step before the pivot may run out of its budget and give the order up.)
	 */
	function endedConsistently(saga: any, answer: any) {
		expect(saga.status, JSON.stringify(saga.failure ?? saga.parkedReason)).to.be.oneOf(["completed", "compensated"]);
		expect(answer.status).to.be.oneOf(saga.status === "completed" ? ["confirmed"] : ["cancelled", "payment_failed"]);
	}

	function record(name: string, def: SagaDefinition<any>, saga: any, ms: number) {
		const points = pointsPassed(def, saga);
		points.forEach(p => passed.add(p));
		const now = fired();
		const missing = points.filter(p => !now.has(fileName(p)));
		expect(missing, `points ${name} passed that did not fire`).to.deep.equal([]);
		rows.push(`| ${name} | ${saga.status} | ${points.length} | ${(ms / 1000).toFixed(1)} s |`);
	}

	let code = "";
	let firstOrder: { orderId: string; token: string } | null = null;

	it("a card order with a promo code: every point its saga passes fires, and it ends as its client is told", async () => {
		code = `CRASH${randomUUID().slice(0, 6).toUpperCase()}`;
		expectStatus(await http.post("/api/admin/promotions", { name: `Crash ${code}`, code, kind: "percentage", value: 10 }, admin), 201);
		const c = await shopper("card", code);
		const { saga, answer, ms } = await placeThroughCrashes(c, CARDS.ok);
		endedConsistently(saga, answer);
		record(`card + promo code${saga.status === "compensated" ? ` (gave up at ${saga.failure?.step}: ${saga.failure?.message})` : ""}`, placeOrder, saga, ms);
		if (saga.status === "completed") firstOrder = { orderId: answer.orderId, token: c.token };
	});

	it("a BLIK order: awaiting payment and the wait for the bank survive their crashes", async () => {
		const c = await shopper("blik");
		const { saga, answer, ms } = await placeThroughCrashes(c, { blikCode: "777123" });
		endedConsistently(saga, answer);
		record(`BLIK${saga.status === "compensated" ? ` (gave up at ${saga.failure?.step}: ${saga.failure?.message})` : ""}`, placeOrder, saga, ms);
	});

	it("a declined card with a promo code: every compensation's points fire, and it ends payment_failed with everything given back", async () => {
		const c = await shopper("card", code);
		const { saga, answer, ms } = await placeThroughCrashes(c, CARDS.declined);
		expect(saga.status, JSON.stringify(saga.parkedReason)).to.equal("compensated");
		expect(answer.status).to.equal("payment_failed");
		expect(saga.compensatedSteps).to.include.members(["reserveStock", "redeemPromotion", "createOrder", "lockCart"]);
		record("declined card", placeOrder, saga, ms);
	});

	it("cancelling the first order: every step of cancel-order survives its crashes; cancelled, payment voided", async () => {
		if (!firstOrder) {
			// The first order was given up: a fresh one (its points have fired) to cancel.
			const c = await shopper("card", code);
			const { saga, answer } = await placeThroughCrashes(c, CARDS.ok);
			expect(saga.status, JSON.stringify(saga.failure ?? saga.parkedReason)).to.equal("completed");
			firstOrder = { orderId: answer.orderId, token: c.token };
		}
		const started = Date.now();
		const { orderId, token } = firstOrder;
		const asked = await http.post(`/api/orders/${orderId}/cancel`, { reason: "Changed my mind" }, token);
		expect(asked.status, JSON.stringify(asked.body)).to.be.oneOf([202, 503, 504]);
		const bad: string[] = [];
		const order = await pollUntil(async () => {
			const again = await http.post(`/api/orders/${orderId}/cancel`, { reason: "Changed my mind" }, token).catch(() => null);
			if (again && ![202, 409, 503, 504].includes(again.status)) bad.push(`${again.status} ${JSON.stringify(again.body).slice(0, 200)}`);
			const o = await http.get(`/api/orders/${orderId}`, token).catch(() => null);
			return o?.status === 200 && o.body.status === "cancelled" ? o.body : null;
		}, 240_000, "the order to be cancelled through its crashes");
		expect(bad, "answers a storefront cannot act on").to.deep.equal([]);
		expect(order.payment?.status).to.equal("voided");
		const sagas = await client.call<any[], any>("checkout.sagasOfOrder", { orderId });
		const cancel = sagas.find(s => s.type === "cancel-order")!;
		expect(cancel.status).to.equal("completed");
		record("cancel the card order", cancelOrder, cancel, Date.now() - started);
	});

	it("at the end: the books balance, and every point any checkout passed fired exactly once", async () => {
		await eventually(async () => ((await checkBooks(db, { [product.sku]: STOCK }, customers)).problems.length === 0 ? true : null), 60_000, "the books to balance").catch(async err => {
			throw new Error(`${err.message}: ${(await checkBooks(db, { [product.sku]: STOCK }, customers)).problems.join("; ")}`);
		});
		expect(processes.flatMap(p => p.unexpected), "processes that died other than at a crash point").to.deep.equal([]);
	});
});
