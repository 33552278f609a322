/**
 * A retried place never loses its order. Twelve customers place at once; the checkout process
 * is killed (SIGKILL) at some point between receiving the requests and the sagas' first step,
 * and started again; every customer then retries POST /api/checkout/place with the same
 * Idempotency-Key. Every retry must answer 202 with the same order id — never 404 or 5xx — each
 * customer gets exactly one saga and one order, and the books balance (stock reserved and one
 * authorized payment per confirmed order). Real RabbitMQ, Postgres and Redis, services as
 * separate OS processes.
 */
import { expect } from "chai";
import Redis from "ioredis";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import { RedisSagaStore, sagaKeys, SagaRecord, TERMINAL_STATUSES } from "../../sagas";
import { placeIds } from "../../services/checkout/place-ids";
import { eventually } from "../support/cluster";
import { expectStatus, Http, HttpAnswer } from "../support/http";
import { spawnServices, ServiceProcess } from "../support/processes";
import { adminLogin, CARDS, productInStock, readyCheckout, stockOf, verifiedCustomer } from "../support/shop";

const PARTICIPANTS = ["customers", "notifications", "catalog", "inventory", "carts", "orders", "payments", "shipping", "promotions", "addons"];
const CUSTOMERS = 12;
/** The orchestrator pauses before each step, so a kill can land after the sagas exist and before their first step. */
const ORCHESTRATOR = { SAGA_STEP_DELAY_MS: "400", SAGA_LEASE_MS: "2000", SAGA_RECOVERY_INTERVAL_MS: "1000" };

type Customer = Awaited<ReturnType<typeof verifiedCustomer>>;

describe("a retried place never loses its order (checkout killed between request and first step)", function () {
	this.timeout(600_000);
	const port = String(33000 + Math.floor(Math.random() * 2000));
	const http = new Http(`http://127.0.0.1:${port}`);
	let api: ServiceProcess, participants: ServiceProcess;
	let orchestrator: ServiceProcess | null = null;
	let client: ServiceBroker;
	let redis: Redis;
	let store: RedisSagaStore;
	let admin: string;
	const figures: string[] = [];
	const spawned: ServiceProcess[] = [];

	before(async () => {
		participants = spawnServices(PARTICIPANTS);
		api = spawnServices(["api"], { PORT: port });
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-retry-client` });
		await client.start();
		await client.waitForServices(["api", ...PARTICIPANTS], 150_000);
		redis = new Redis(process.env.REDIS_URL!);
		store = new RedisSagaStore(redis, { prefix: process.env.REDIS_PREFIX! });
		admin = await adminLogin(http);
	});

	// Whatever a test left running (also when it failed) stops before the next one starts.
	afterEach(async () => {
		await Promise.all(spawned.map(p => p.kill()));
		orchestrator = null;
	});

	after(async () => {
		if (process.env.DEBUG_RETRY) {
			const fs = await import("node:fs");
			spawned.forEach((p, i) => fs.writeFileSync(`/tmp/saga-orchestrator-${i}.log`, p.output.join("")));
			fs.writeFileSync(`/tmp/saga-participants.log`, participants.output.join(""));
			fs.writeFileSync(`/tmp/saga-api.log`, api.output.join(""));
		}
		if (figures.length) console.log(`\n      Sagas resumed after the restart:\n${figures.map(f => `        ${f}`).join("\n")}\n`);
		await orchestrator?.kill();
		await Promise.all(spawned.map(p => p.kill()));
		await client?.stop();
		redis?.disconnect();
		await Promise.all([api?.kill(), participants?.kill()]);
	});

	/** Starts a checkout process and answers when the client's registry lists checkout on that very node. */
	async function startOrchestrator(): Promise<number> {
		const { process: p, readyAt } = await checkoutProcess();
		orchestrator = p;
		return readyAt;
	}

	async function checkoutProcess(): Promise<{ process: ServiceProcess; nodeID: string; readyAt: number }> {
		const nodeID = `${process.env.TEST_RUN_ID}-checkout-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
		const p = spawnServices(["checkout"], { ...ORCHESTRATOR, NODE_ID: nodeID, ...(process.env.DEBUG_RETRY ? { LOG_LEVEL: "debug" } : {}) });
		spawned.push(p);
		await eventually(() => client.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === "checkout" && s.nodeID === nodeID), 60_000, "the checkout process to be up");
		return { process: p, nodeID, readyAt: Date.now() };
	}

	async function sagaOf(c: Customer): Promise<SagaRecord | null> {
		return store.get(placeIds(c.id, keyOf(c)).sagaId);
	}
	const keyOf = (c: Customer) => `place-${c.id}`;

	const place = (c: Customer) => http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token, { "idempotency-key": keyOf(c) });

	const killPoints: Array<{ name: string; kill: (customers: Customer[]) => Promise<void> }> = [
		{ name: "0 ms after the requests were sent", kill: async () => undefined },
		{ name: "60 ms after the requests were sent", kill: () => new Promise(r => setTimeout(r, 60)) },
		{
			name: "as soon as the first saga exists (the others between request and saga)",
			kill: async customers => {
				await eventually(async () => (await Promise.all(customers.map(sagaOf))).some(r => r !== null), 60_000, "a saga to exist");
			}
		},
		{
			name: "once every saga exists, before its first step",
			kill: async customers => {
				await eventually(async () => {
					const recs = await Promise.all(customers.map(sagaOf));
					return recs.every(r => r !== null);
				}, 60_000, "every saga to exist");
			}
		}
	];

	for (const point of killPoints) {
		it(`killed ${point.name}: every retry answers 202 with the same order, one order each, the books balance`, async () => {
			const product = await productInStock(http, admin, { stock: 50 });
			const customers = await Promise.all(Array.from({ length: CUSTOMERS }, () => verifiedCustomer(http, admin)));
			await startOrchestrator(); // the checkout session is checkout's
			await Promise.all(customers.map(async c => {
				expectStatus(await http.post("/api/cart/items", { productId: product.id, quantity: 1 }, c.token), 200);
				await readyCheckout(http, c.token);
			}));

			const first = customers.map(place);
			await point.kill(customers);
			await orchestrator!.kill("SIGKILL");
			const killedAt = Date.now();
			const atKill = await Promise.all(customers.map(sagaOf));
			const before = { exist: atKill.filter(Boolean).length, stepped: atKill.filter(r => r && r.history.some(h => h.event.startsWith("sent "))).length };

			const readyAt = await startOrchestrator();
			// Each storefront retries with the same key, three times, as its requests come back.
			const retries: HttpAnswer[][] = await Promise.all(
				customers.map(async c => {
					const answers: HttpAnswer[] = [];
					for (let i = 0; i < 3; i++) {
						const t0 = Date.now();
						const a = await place(c);
						if (process.env.DEBUG_RETRY) console.log(`retry ${i} ${c.email} sent +${t0 - killedAt} answered +${Date.now() - killedAt} ${a.status} ${JSON.stringify(a.body).slice(0, 120)}`);
						answers.push(a);
						await new Promise(r => setTimeout(r, 200));
					}
					return answers;
				})
			);
			const firstAnswers = await Promise.all(first);

			customers.forEach((c, i) => {
				const orderId = placeIds(c.id, keyOf(c)).orderId;
				for (const answer of retries[i]!) {
					expect(answer.status, `a retry of customer ${i}: ${JSON.stringify(answer.body)}`).to.equal(202);
					expect(answer.body.orderId).to.equal(orderId);
				}
				const firstAnswer = firstAnswers[i]!;
				if (firstAnswer.status === 202) expect(firstAnswer.body.orderId).to.equal(orderId);
				else expect(firstAnswer.status, `the first request of customer ${i} (the one in flight when checkout died)`).to.not.equal(404);
			});

			// Every saga ends; each customer has one saga and one confirmed order with one authorized payment.
			const ends = await Promise.all(customers.map(c => eventually(async () => {
				const rec = await sagaOf(c);
				return rec && (TERMINAL_STATUSES as readonly string[]).includes(rec.status) ? rec : null;
			}, 120_000, `the saga of ${c.email} to end`)));
			const all = (await store.list({ type: "place-order", limit: 5000 })).rows;
			for (const [i, c] of customers.entries()) {
				expect(all.filter(r => r.data.customerId === c.id), `sagas of customer ${i}`).to.have.length(1);
				expect(ends[i]!.status, `saga of customer ${i}: ${ends[i]!.failure?.message ?? ends[i]!.parkedReason}`).to.equal("completed");
				const order = await client.call<any, any>("orders.get", { id: ends[i]!.data.orderId });
				expect(order.status).to.equal("confirmed");
				const payments = await client.call<any[], any>("payments.list", { orderId: order.id });
				expect(payments.filter(p => p.status === "authorized"), `authorized payments of customer ${i}`).to.have.length(1);
			}
			const stock = await stockOf(http, admin, product.sku);
			expect(stock).to.include({ onHand: 50, reserved: CUSTOMERS, available: 50 - CUSTOMERS });

			// How soon after the restart the sagas left by the dead process moved again.
			const resumed = ends
				.filter((_r, i) => atKill[i])
				.map(r => r.history.find(h => Date.parse(h.at) > killedAt))
				.filter(Boolean)
				.map(h => Date.parse(h!.at) - readyAt);
			const sinceKill = resumed.length ? Math.max(...resumed) + readyAt - killedAt : 0;
			const slowest = resumed.length ? Math.max(...resumed) : 0;
			const statuses = firstAnswers.map(a => a.status).reduce<Record<number, number>>((n, s) => ({ ...n, [s]: (n[s] ?? 0) + 1 }), {});
			figures.push(
				`killed ${point.name}: ${before.exist} of ${CUSTOMERS} sagas existed (${before.stepped} had sent a step); ` +
					`restart ready ${readyAt - killedAt} ms after the kill; the ${resumed.length} left behind moved again at most ${sinceKill} ms after the kill (${slowest} ms after the new process was seen ready: its recovery runs as it starts); ` +
					`first requests answered ${JSON.stringify(statuses)}; ${CUSTOMERS * 3} retries all 202`
			);
		});
	}

	it("two checkout replicas, one SIGKILLed mid-saga: the other resumes its sagas within a few seconds and finishes them", async () => {
		const product = await productInStock(http, admin, { stock: 50 });
		const customers = await Promise.all(Array.from({ length: CUSTOMERS }, () => verifiedCustomer(http, admin)));
		const a = await checkoutProcess();
		await checkoutProcess(); // replica B, the survivor
		await Promise.all(customers.map(async c => {
			expectStatus(await http.post("/api/cart/items", { productId: product.id, quantity: 1 }, c.token), 200);
			await readyCheckout(http, c.token);
		}));

		const first = customers.map(place);
		// Kill replica A once it drives sagas that are under way.
		const leaseOf = (c: Customer) => redis.get(sagaKeys(process.env.REDIS_PREFIX!).lease(placeIds(c.id, keyOf(c)).sagaId));
		await eventually(async () => {
			const holders = await Promise.all(customers.map(leaseOf));
			const recs = await Promise.all(customers.map(sagaOf));
			return holders.filter((h, i) => h?.startsWith(`${a.nodeID}:`) && recs[i]?.history.some(e => e.event.startsWith("sent "))).length >= 2;
		}, 60_000, "replica A to drive sagas under way");
		const orphans = (await Promise.all(customers.map(async c => ((await leaseOf(c))?.startsWith(`${a.nodeID}:`) ? c : null)))).filter((c): c is Customer => c !== null);
		await a.process.kill("SIGKILL");
		const killedAt = Date.now();

		const answers = await Promise.all(first);
		const retries = await Promise.all(customers.map(place));
		for (const [i, r] of [...answers, ...retries].entries()) {
			const c = customers[i % CUSTOMERS]!;
			expect(r.status, `${i < CUSTOMERS ? "request" : "retry"} of customer ${i % CUSTOMERS}: ${JSON.stringify(r.body)}`).to.equal(202);
			expect(r.body.orderId).to.equal(placeIds(c.id, keyOf(c)).orderId);
		}
		const ends = await Promise.all(customers.map(c => eventually(async () => {
			const rec = await sagaOf(c);
			return rec && (TERMINAL_STATUSES as readonly string[]).includes(rec.status) && rec.announced ? rec : null;
		}, 120_000, `the saga of ${c.email} to end`)));
		for (const end of ends) expect(end.status).to.equal("completed");
		expect(await stockOf(http, admin, product.sku)).to.include({ onHand: 50, reserved: CUSTOMERS });

		const resumedAfter = await Promise.all(orphans.map(async c => {
			const rec = (await sagaOf(c))!;
			const next = rec.history.find(h => Date.parse(h.at) > killedAt);
			return next ? Date.parse(next.at) - killedAt : NaN;
		}));
		figures.push(`two replicas, one SIGKILLed: the survivor resumed the ${orphans.length} saga(s) the dead one drove ${resumedAfter.join(", ")} ms after the kill (lease ${ORCHESTRATOR.SAGA_LEASE_MS} ms, recovery every ${ORCHESTRATOR.SAGA_RECOVERY_INTERVAL_MS} ms); every request and retry 202`);
		expect(resumedAfter.every(Number.isFinite)).to.equal(true);
	});

	it("a saga past its retention leaves the store and the operators' list; a retry with its key still answers its order, 202", async () => {
		const product = await productInStock(http, admin, { stock: 5 });
		const c = await verifiedCustomer(http, admin);
		// Kept 3 s once finished (SAGA_RETENTION_DAYS is in days).
		const nodeID = `${process.env.TEST_RUN_ID}-checkout-retention-${Date.now().toString(36)}`;
		spawned.push(spawnServices(["checkout"], { SAGA_RETENTION_DAYS: String(3000 / 86_400_000), NODE_ID: nodeID }));
		await eventually(() => client.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === "checkout" && s.nodeID === nodeID), 60_000, "the checkout process to be up");
		expectStatus(await http.post("/api/cart/items", { productId: product.id, quantity: 1 }, c.token), 200);
		await readyCheckout(http, c.token);
		const placed = await place(c);
		expect(placed.status, JSON.stringify(placed.body)).to.be.oneOf([201, 202]);
		const { sagaId, orderId } = placeIds(c.id, keyOf(c));
		expect(placed.body.orderId).to.equal(orderId);
		await eventually(async () => (await sagaOf(c))?.announced === true, 30_000, "the saga to end");
		const listed = async () => expectStatus(await http.get("/api/admin/sagas?pageSize=100", admin), 200).rows.map((r: any) => r.id) as string[];
		expect(await listed()).to.include(sagaId);

		await eventually(async () => (await sagaOf(c)) === null, 15_000, "the finished saga to expire");
		await eventually(async () => !(await listed()).includes(sagaId), 15_000, "the saga to leave the operators' list");
		const retried = await place(c);
		expect([retried.status, retried.body.orderId, retried.body.status], JSON.stringify(retried.body)).to.deep.equal([202, orderId, "confirmed"]);
		expect(expectStatus(await http.get(`/api/orders/${orderId}`, c.token), 200).status).to.equal("confirmed");
	});
});
