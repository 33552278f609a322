/**
 * Losing the saga store. The checkout process keeps its sagas in a private redis-server of this
 * test (append-only file on, `appendfsync everysec`); the other services run as their own OS
 * processes on the real RabbitMQ and Postgres. Ten shoppers place card orders in a loop, the
 * orchestrator pausing before each step so that sagas are caught in the middle, and
 * - the store is emptied (FLUSHALL): within the reconcile window no order is left pending, no
 *   cart locked, the books balance, and every same-key retry answers its order (202, never 404/5xx);
 * - the store is shut down and started again on its append-only file: nothing is lost — every
 *   saga is still there and finishes, the reconciler has nothing to do.
 */
import { expect } from "chai";
import { writeReliabilityFigures } from "../support/reliability-doc";
import type { Knex } from "knex";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import { RedisSagaStore, TERMINAL_STATUSES } from "../../sagas";
import { SERVICE_NAMES } from "../../services";
import { placeIds } from "../../services/checkout/place-ids";
import { checkBooks } from "../support/books";
import { eventually } from "../support/cluster";
import { Http } from "../support/http";
import { Customer, Load, newLoad, placeCard, shopper as runShopper } from "../support/shoppers";
import { freePort, PrivateRedis } from "../support/private-redis";
import { spawnServices, ServiceProcess } from "../support/processes";
import { adminLogin, productInStock, readyCheckout, verifiedCustomer } from "../support/shop";

const PARTICIPANTS = SERVICE_NAMES.filter(name => name !== "api" && name !== "checkout");
const SHOPPERS = 10;
const STOCK = 100_000;
const RECONCILE_AFTER_MS = 6000;
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

describe("losing the saga store (a private redis-server)", function () {
	this.timeout(420_000);
	let redis: PrivateRedis;
	let participants: ServiceProcess, api: ServiceProcess, checkout: ServiceProcess;
	let client: ServiceBroker;
	let store: RedisSagaStore;
	let storeRedis: ReturnType<PrivateRedis["client"]>;
	let http: Http;
	let admin: string;
	let db: Knex;
	let shoppers: Customer[] = [];
	let product: { id: string; sku: string };
	const figures: string[] = [];

	before(async () => {
		redis = new PrivateRedis(await freePort());
		await redis.start();
		const port = String(await freePort());
		http = new Http(`http://127.0.0.1:${port}`);
		participants = spawnServices(PARTICIPANTS);
		api = spawnServices(["api"], { PORT: port });
		checkout = spawnServices(["checkout"], {
			REDIS_URL: redis.url, RECONCILE_AFTER_MS: String(RECONCILE_AFTER_MS), RECONCILE_INTERVAL_MS: "1000",
			SAGA_STEP_DELAY_MS: "150", SAGA_LEASE_MS: "2000", SAGA_RECOVERY_INTERVAL_MS: "500", LOG_LEVEL: "info"
		});
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-store-loss-client` });
		await client.start();
		await client.waitForServices(["api", "checkout", ...PARTICIPANTS], 90_000);
		storeRedis = redis.client();
		store = new RedisSagaStore(storeRedis, { prefix: process.env.REDIS_PREFIX! });
		const { default: knexFactory } = await import("knex");
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
		admin = await adminLogin(http);
		product = await productInStock(http, admin, { stock: STOCK, price: 1000 });
		shoppers = await Promise.all(Array.from({ length: SHOPPERS }, () => verifiedCustomer(http, admin)));
	});

	after(async () => {
		if (figures.length) console.log(`\n      Saga store lost:\n${figures.map(f => `        ${f}`).join("\n")}\n`);
		if (figures.length === 3) writeReliabilityFigures("saga-store-loss", `Last run (${new Date().toISOString().slice(0, 10)}):\n\n${figures.map(f => `- ${f}`).join("\n")}`);
		if (process.env.DEBUG_STORE_LOSS) (await import("node:fs")).writeFileSync("/tmp/store-loss-checkout.log", checkout?.output.join("") ?? "");
		await client?.stop().catch(() => undefined);
		await Promise.all([checkout?.kill(), api?.kill(), participants?.kill()]);
		storeRedis?.disconnect();
		await redis?.stop();
		redis?.removeDir();
		await db?.destroy();
	});

	const place = (c: Customer, key: string) => placeCard(http, c, key);
	const shopper = (c: Customer, tag: string, until: number, load: Load) => runShopper(http, product.id, c, tag, until, load);

	const reconcilerLines = (from: number) => checkout.output.slice(from).join("").split("\n").filter(l => l.includes("Reconciler: "));

	it("emptied (FLUSHALL) during a checkout load: no order pending, no cart locked, books balance within the reconcile window; same-key retries answer the order", async () => {
		const load = newLoad();
		const outputFrom = checkout.output.length;
		const start = Date.now();
		const running = shoppers.map((c, i) => shopper(c, `flush-${i}`, start + 14_000, load));
		// Flush once sagas are under way in the middle of their steps.
		await eventually(async () => (await store.list({ type: "place-order", status: "running", limit: 100 })).total >= 4, 60_000, "sagas under way");
		const underWay = (await store.list({ type: "place-order", status: "running", limit: 100 })).total;
		await redis.flushAll();
		const flushedAt = Date.now();

		await Promise.all(running);
		// Within the reconcile window (age + a pass or two, with slack for this loaded machine) the books balance.
		const balanced = await eventually(async () => {
			const b = await checkBooks(db, { [product.sku]: STOCK }, shoppers.map(c => c.id));
			return b.problems.length === 0 ? b : null;
		}, RECONCILE_AFTER_MS + 60_000, "the books to balance").catch(async err => {
			const b = await checkBooks(db, { [product.sku]: STOCK }, shoppers.map(c => c.id));
			throw new Error(`${err.message}: ${b.problems.join("; ")}`);
		});
		const balancedAfter = Date.now() - flushedAt;

		// Every key retried once more: its order (202), never 404 or 5xx.
		const retries = await Promise.all(load.placed.map(async ({ c, key }) => ({ key, c, a: await place(c, key) })));
		for (const { key, c, a } of retries) {
			expect(a.status, `retry of ${key}: ${JSON.stringify(a.body)}`).to.equal(202);
			expect(a.body.orderId).to.equal(placeIds(c.id, key).orderId);
		}
		expect(load.bad, load.bad.join("\n")).to.deep.equal([]);
		// A retry may have placed again what never became an order: the books balance once more afterwards.
		await eventually(async () => (await checkBooks(db, { [product.sku]: STOCK }, shoppers.map(c => c.id))).problems.length === 0, 60_000, "the books to balance after the retries");

		const lines = reconcilerLines(outputFrom);
		const count = (what: string) => lines.filter(l => l.includes(what)).length;
		figures.push(
			`FLUSHALL with ${underWay} sagas running (step delay 150 ms), ${load.placed.length} places by ${SHOPPERS} shoppers in 14 s: ` +
				`books balanced ${balancedAfter} ms after the flush (RECONCILE_AFTER_MS ${RECONCILE_AFTER_MS}, a pass every 1 s); ` +
				`reconciler: ${count("finished it")} order(s) finished, ${count("compensated it")} compensated, ${count("checked it out")} cart(s) checked out, ${count("unlocked it")} unlocked; ` +
				`outcomes ${JSON.stringify(load.outcomes)}; answers ${JSON.stringify(load.statuses)}; orders ${JSON.stringify(balanced.orders)}; payments ${JSON.stringify(balanced.payments)}; ${retries.length} final retries all 202`
		);
	});

	it("shut down and started again on its append-only file during a checkout load: nothing lost, every saga finishes, the reconciler has nothing to do", async () => {
		const load = newLoad();
		const outputFrom = checkout.output.length;
		const start = Date.now();
		const running = shoppers.map((c, i) => shopper(c, `restart-${i}`, start + 14_000, load));
		await eventually(async () => (await store.list({ type: "place-order", status: "running", limit: 100 })).total >= 4, 60_000, "sagas under way");
		const before = (await store.list({ type: "place-order", limit: 10_000 })).total;
		const underWay = (await store.list({ type: "place-order", status: "running", limit: 100 })).total;
		const downAt = Date.now();
		await redis.shutdown();
		await sleep(2000);
		await redis.start();
		const upAfter = Date.now() - downAt;

		await Promise.all(running);
		expect(load.bad, load.bad.join("\n")).to.deep.equal([]);
		// Every key placed has its saga in the store, completed, and its order confirmed.
		const ends = await Promise.all(load.placed.map(({ c, key }) => eventually(async () => {
			const rec = await store.get(placeIds(c.id, key).sagaId);
			return rec && (TERMINAL_STATUSES as readonly string[]).includes(rec.status) ? rec : null;
		}, 60_000, `the saga of ${key}`)));
		for (const [i, rec] of ends.entries()) expect(rec.status, `${load.placed[i]!.key}: ${rec.failure?.message ?? rec.parkedReason}`).to.equal("completed");
		expect((await store.list({ type: "place-order", limit: 10_000 })).total).to.be.at.least(before);
		const books = await checkBooks(db, { [product.sku]: STOCK }, shoppers.map(c => c.id));
		expect(books.problems, books.problems.join("\n")).to.deep.equal([]);
		expect(reconcilerLines(outputFrom), "the reconciler acted").to.deep.equal([]);
		figures.push(
			`SHUTDOWN + start on the append-only file (down ${upAfter} ms) with ${underWay} sagas running: ${load.placed.length} places, all ${ends.length} sagas completed, ` +
				`0 lost, reconciler idle; answers ${JSON.stringify(load.statuses)} (503s while Redis was down, retried with the same key)`
		);
	});

	it("a saga lost right after the payment was authorized is finished (order confirmed); one lost after the stock was reserved is compensated (order cancelled, stock and cart freed)", async () => {
		// A slow orchestrator (1.5 s before each step), so the store can be emptied at a chosen point.
		await checkout.kill();
		checkout = spawnServices(["checkout"], {
			REDIS_URL: redis.url, RECONCILE_AFTER_MS: String(RECONCILE_AFTER_MS), RECONCILE_INTERVAL_MS: "1000",
			SAGA_STEP_DELAY_MS: "1500", SAGA_LEASE_MS: "2000", SAGA_RECOVERY_INTERVAL_MS: "500", LOG_LEVEL: "info"
		});
		await eventually(async () => (await http.get("/api/checkout/shipping-methods", shoppers[0]!.token)).status === 200, 90_000, "checkout back");
		const outputFrom = checkout.output.length;
		const cases = [
			{ c: shoppers[0]!, key: "lost-after-authorize", after: "authorizePayment", expected: "confirmed" },
			{ c: shoppers[1]!, key: "lost-after-reserve", after: "reserveStock", expected: "cancelled" }
		];
		for (const k of cases) {
			await eventually(async () => (await http.post("/api/cart/items", { productId: product.id, quantity: 2 }, k.c.token)).status === 200, 30_000, "add to cart");
			await readyCheckout(http, k.c.token);
			const sagaId = placeIds(k.c.id, k.key).sagaId;
			const first = place(k.c, k.key);
			await eventually(async () => (await store.get(sagaId))?.completedSteps.includes(k.after), 60_000, `${k.key}: ${k.after} done`);
			await redis.flushAll();
			await first;
		}
		for (const k of cases) {
			const orderId = placeIds(k.c.id, k.key).orderId;
			const order = await eventually(async () => {
				const a = await place(k.c, k.key);
				expect(a.status, JSON.stringify(a.body)).to.equal(202);
				return a.body.status === k.expected ? a.body : null;
			}, RECONCILE_AFTER_MS + 60_000, `${k.key} to be ${k.expected}`);
			expect(order.orderId).to.equal(orderId);
			expect(order.payment.status).to.equal(k.expected === "confirmed" ? "authorized" : "none");
		}
		const books = await eventually(async () => {
			const b = await checkBooks(db, { [product.sku]: STOCK }, shoppers.map(c => c.id));
			return b.problems.length === 0 ? b : null;
		}, 60_000, "the books to balance");
		const lines = reconcilerLines(outputFrom);
		expect(lines.some(l => l.includes("finished it")), lines.join("\n")).to.equal(true);
		expect(lines.some(l => l.includes("compensated it")), lines.join("\n")).to.equal(true);
		figures.push(`saga lost after authorizePayment: order finished (confirmed, cart checked out); after reserveStock: compensated (cancelled, stock released, cart unlocked); orders ${JSON.stringify(books.orders)}`);
	});
});
