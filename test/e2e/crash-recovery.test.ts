/**
 * The orchestrator dies (SIGKILL) in the middle of a saga; a fresh orchestrator process
 * finishes every saga to a consistent end: a confirmed order holds its stock and its
 * authorized payment, any other order holds neither. A BLIK saga killed while it waits for the
 * bank goes on in a fresh process: the bank's answer, sent while no orchestrator ran, waited in
 * checkout's queue; the deadline, kept in Redis, fires there.
 */
import { expect } from "chai";
import Redis from "ioredis";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import { RedisSagaStore } from "../../sagas";
import { placeOrder } from "../../sagas/place-order.saga";
import { eventually } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { spawnServices, ServiceProcess } from "../support/processes";
import { adminLogin, CARDS, finishedSaga, productInStock, readyCheckout, verifiedCustomer } from "../support/shop";

const PARTICIPANTS = ["customers", "notifications", "catalog", "inventory", "carts", "orders", "payments", "shipping", "promotions", "addons"];

describe("orchestrator crash in the middle of place-order (separate processes)", function () {
	this.timeout(300_000);
	const port = String(31000 + Math.floor(Math.random() * 2000));
	const http = new Http(`http://127.0.0.1:${port}`);
	let api: ServiceProcess, participants: ServiceProcess;
	let client: ServiceBroker;
	let redis: Redis;
	let store: RedisSagaStore;
	let admin: string;
	const slowOrchestrator = { SAGA_STEP_DELAY_MS: "1500", SAGA_LEASE_MS: "3000" };

	before(async () => {
		// The simulated bank answers BLIK 777123 only after 8 s, through this test's gateway, so an
		// orchestrator can be killed while its saga waits for that answer.
		participants = spawnServices(PARTICIPANTS, { WEBHOOK_TARGET_URL: `http://127.0.0.1:${port}`, BLIK_ANSWER_DELAY_MS: "8000" });
		api = spawnServices(["api"], { PORT: port });
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-crash-client` });
		await client.start();
		await client.waitForServices(["api", ...PARTICIPANTS], 150_000);
		redis = new Redis(process.env.REDIS_URL!);
		store = new RedisSagaStore(redis, { prefix: process.env.REDIS_PREFIX! });
		admin = await adminLogin(http);
	});

	after(async () => {
		await client?.stop();
		redis?.disconnect();
		await Promise.all([api?.kill(), participants?.kill()]);
	});

	/**
	 * Starts a checkout process and waits for this very process (the one killed by the previous
	 * test may still be listed), then until the gateway — a process of its own, which learns of
	 * it a moment after this test's broker does — reaches it for `token`'s customer.
	 */
	async function startOrchestrator(env: Record<string, string>, token: string) {
		const nodeID = `${process.env.TEST_RUN_ID}-checkout-${Date.now().toString(36)}`;
		const orchestrator = spawnServices(["checkout"], { ...env, NODE_ID: nodeID });
		await eventually(() => client.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === "checkout" && s.nodeID === nodeID), 60_000, "the checkout process");
		await eventually(async () => (await http.get("/api/checkout", token)).status === 200, 30_000, "the gateway to reach the checkout process");
		return orchestrator;
	}

	async function placeAndKillAfter(step: string, card = CARDS.ok) {
		const p = await productInStock(http, admin, { stock: 5 });
		const c = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 2 }, c.token), 200);

		const orchestrator = await startOrchestrator(slowOrchestrator, c.token);
		await readyCheckout(http, c.token);
		const placing = http.post("/api/checkout/place", { paymentDetails: card }, c.token);
		const sagaId = await eventually(async () => (await store.list({ type: "place-order", limit: 50 })).rows.find(r => r.data.customerId === c.id)?.id, 20_000, "the saga to start");
		await eventually(async () => {
			const rec = await store.get(sagaId);
			const index = placeOrder.steps.findIndex(s => s.name === step);
			return rec && rec.status === "running" && rec.step > index;
		}, 30_000, `the saga to pass ${step}`);
		await orchestrator.kill("SIGKILL");
		const killedAt = await store.get(sagaId);
		await placing.catch(() => undefined);
		return { sagaId, product: p, customer: c, killedAt: killedAt! };
	}

	async function expectConsistent(sagaId: string, sku: string) {
		const saga = await finishedSaga(http, admin, sagaId, 60_000);
		const orderId = saga.data.orderId;
		const order = await client.call<any, any>("orders.get", { id: orderId }).catch(() => null);
		const stock = await client.call<any, any>("inventory.get", { sku });
		const payments = await client.call<any[], any>("payments.list", { orderId });
		const authorized = payments.filter(x => x.status === "authorized");
		try {
			expectOutcome(saga, order, stock, authorized);
		} catch (err: any) {
			// What moved the stock, and what the saga did, say why the books do not balance.
			const audit = await client.call<any, any>("inventory.audit", { sku, pageSize: 50 }).catch((e: Error) => ({ rows: [{ change: `(audit unreadable: ${e.message})` }] }));
			const moves = audit.rows.reverse().map((r: any) => `${r.at instanceof Date ? r.at.toISOString() : r.at} ${r.change} reserved ${r.reservedBefore}→${r.reservedAfter} order ${r.orderId ?? "-"} ${r.reason ?? ""}`);
			const steps = saga.history.map((h: any) => `${h.at} ${h.event}`);
			err.message += `\n  stock moves:\n    ${moves.join("\n    ")}\n  saga ${saga.id}:\n    ${steps.join("\n    ")}`;
			throw err;
		}
		return saga;
	}

	function expectOutcome(saga: any, order: any, stock: any, authorized: any[]) {
		if (saga.status === "completed") {
			expect(order.status).to.equal("confirmed");
			expect(stock.reserved).to.equal(2);
			expect(authorized).to.have.length(1);
		} else {
			expect(saga.status).to.equal("compensated");
			if (order) expect(order.status).to.not.equal("confirmed");
			expect(stock.reserved, "no stock held for an order that is not confirmed").to.equal(0);
			expect(authorized, "no payment authorized for an order that is not confirmed").to.have.length(0);
		}
	}

	for (const step of ["createOrder", "reserveStock", "authorizePayment"]) {
		it(`a saga killed after ${step} is finished by a fresh orchestrator`, async () => {
			const { sagaId, product, killedAt } = await placeAndKillAfter(step);
			expect(killedAt.status).to.equal("running");
			expect(killedAt.completedSteps).to.include(step);
			const fresh = spawnServices(["checkout"], { SAGA_LEASE_MS: "3000" });
			try {
				const saga = await expectConsistent(sagaId, product.sku);
				expect(saga.status).to.equal("completed");
				const sends = saga.history.filter((h: any) => h.state !== undefined);
				expect(sends.length).to.be.greaterThan(0);
			} finally {
				await fresh.kill();
			}
		});
	}

	it("a declined payment's compensation interrupted by a crash is completed by a fresh orchestrator", async () => {
		const { sagaId, product } = await placeAndKillAfter("reserveStock", CARDS.declined);
		const fresh = spawnServices(["checkout"], { SAGA_LEASE_MS: "3000" });
		try {
			const saga = await expectConsistent(sagaId, product.sku);
			expect(saga.status).to.equal("compensated");
			expect(saga.failure.type).to.equal("PAYMENT_DECLINED");
		} finally {
			await fresh.kill();
		}
	});

	it("a place sent without Idempotency-Key, its orchestrator killed before it answered, is answered with its one order by the fresh orchestrator", async () => {
		// RabbitMQ gives the unanswered request to the fresh process. Taken there as a new request,
		// it would place a second order from the same cart (the declined card leaves the cart free
		// again) or answer 409 for an order that exists.
		const p = await productInStock(http, admin, { stock: 5 });
		const c = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 2 }, c.token), 200);
		const orchestrator = await startOrchestrator(slowOrchestrator, c.token);
		await readyCheckout(http, c.token);
		const placing = http.post("/api/checkout/place", { paymentDetails: CARDS.declined }, c.token);
		const sagaId = await eventually(async () => (await store.list({ type: "place-order", limit: 50 })).rows.find(r => r.data.customerId === c.id)?.id, 20_000, "the saga to start");
		// Killed in the saga's first pause: the place still waits for the outcome (up to 5 s), unanswered.
		await orchestrator.kill("SIGKILL");
		const fresh = spawnServices(["checkout"], { SAGA_LEASE_MS: "3000" });
		try {
			const answered = await placing;
			const saga = await expectConsistent(sagaId, p.sku);
			expect(saga.status).to.equal("compensated");
			expect(answered.status, JSON.stringify(answered.body)).to.equal(202);
			expect(answered.body.orderId).to.equal(saga.data.orderId);
			// Settled: a second saga, had one started, has had the time to reserve.
			await new Promise(resolve => setTimeout(resolve, 3000));
			const sagas = (await store.list({ type: "place-order", limit: 100 })).rows.filter(r => r.data.customerId === c.id);
			expect(sagas.map(r => r.id), "one saga for the one request").to.deep.equal([sagaId]);
			expect((await client.call<any, any>("inventory.get", { sku: p.sku })).reserved).to.equal(0);
		} finally {
			await fresh.kill();
		}
	});

	/** Places a BLIK order and kills its orchestrator while the saga waits for the bank's answer. */
	async function placeBlikAndKillWhileWaiting(blikCode: string, deadlineMs: number) {
		const p = await productInStock(http, admin, { stock: 5 });
		const c = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 2 }, c.token), 200);
		const orchestrator = await startOrchestrator({ SAGA_LEASE_MS: "3000", PAYMENT_DEADLINE_MS: String(deadlineMs) }, c.token);
		await readyCheckout(http, c.token, { paymentMethod: "blik" });
		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: { blikCode } }, c.token), 202);
		const sagaId = placed.checkout.sagaId;
		// Killed only once the saga waits for the bank (its wait and deadline are in Redis).
		await eventually(async () => (await store.get(sagaId))?.stepStatus === "waiting", 30_000, "the saga to wait for the bank");
		await orchestrator.kill("SIGKILL");
		return { sagaId, product: p, customer: c, orderId: placed.orderId as string };
	}

	it("a BLIK wait survives the orchestrator: the bank's approval, arriving while no orchestrator runs, confirms the order on a fresh one", async () => {
		const { sagaId, product, orderId } = await placeBlikAndKillWhileWaiting("777123", 120_000);
		// The bank answers while the orchestrator is dead: the event waits in checkout's queue.
		// The bank answers after 8 s; a webhook the gateway did not take is sent again with a growing pause.
		await eventually(async () => (await client.call<any[], any>("payments.list", { orderId })).some(x => x.status === "authorized"), 60_000, "the bank's approval");
		const fresh = spawnServices(["checkout"], { SAGA_LEASE_MS: "3000" });
		try {
			const saga = await expectConsistent(sagaId, product.sku);
			expect(saga.status).to.equal("completed");
		} finally {
			await fresh.kill();
		}
	});

	it("a BLIK wait's deadline survives the orchestrator: a code the bank never answers is compensated by a fresh one", async () => {
		const { sagaId, product, orderId } = await placeBlikAndKillWhileWaiting("123456", 20_000);
		const fresh = spawnServices(["checkout"], { SAGA_LEASE_MS: "3000" });
		try {
			const saga = await expectConsistent(sagaId, product.sku);
			expect(saga.status).to.equal("compensated");
			expect(saga.failure.type).to.equal("DEADLINE_PASSED");
			const order = await client.call<any, any>("orders.get", { id: orderId });
			expect(order.status).to.equal("payment_failed");
		} finally {
			await fresh.kill();
		}
	});
});
