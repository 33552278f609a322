/**
 * Restarting PostgreSQL under a checkout load. Every service runs as its own OS process on a
 * private PostgreSQL of this test (never the shared server), the real RabbitMQ and Redis. Ten
 * shoppers place card orders in a loop, retrying with their Idempotency-Key as a storefront does,
 * while the database is
 * - restarted (`pg_ctl restart -m fast`, what an operator's restart does), and
 * - stopped for 5 s, then started again;
 * no service is restarted by hand. Checked: readiness 503 while the database is down and 200
 * after; every order terminal; the books balance; no answer a client cannot act on (404 or a 5xx
 * other than a retryable 503 / gateway timeout), and every key retried at the end answers its
 * order. `RELIABILITY_WRITE_DOCS=1` writes the figures into docs/reliability.md.
 */
import { expect } from "chai";
import type { Knex } from "knex";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import { SERVICE_NAMES } from "../../services";
import { placeIds } from "../../services/checkout/place-ids";
import { checkBooks } from "../support/books";
import { eventually } from "../support/cluster";
import { Http } from "../support/http";
import { PrivatePostgres } from "../support/private-postgres";
import { freePort } from "../support/private-redis";
import { spawnServices, ServiceProcess } from "../support/processes";
import { writeReliabilityFigures } from "../support/reliability-doc";
import { adminLogin, productInStock, verifiedCustomer } from "../support/shop";
import { Customer, newLoad, placeCard, shopper as runShopper } from "../support/shoppers";

const PARTICIPANTS = SERVICE_NAMES.filter(name => name !== "api" && name !== "checkout");
const SHOPPERS = 10;
const STOCK = 100_000;
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

describe("restarting PostgreSQL under a checkout load (a private PostgreSQL)", function () {
	this.timeout(420_000);
	let pg: PrivatePostgres;
	let participants: ServiceProcess, api: ServiceProcess, checkout: ServiceProcess;
	let client: ServiceBroker;
	let http: Http;
	let admin: string;
	let db: Knex;
	let shoppers: Customer[] = [];
	let product: { id: string; sku: string };
	const rows: string[] = [];

	before(async () => {
		pg = new PrivatePostgres(await freePort());
		await pg.init();
		const env = { DATABASE_URL: pg.url };
		const port = String(await freePort());
		http = new Http(`http://127.0.0.1:${port}`);
		participants = spawnServices(PARTICIPANTS, env);
		api = spawnServices(["api"], { ...env, PORT: port });
		checkout = spawnServices(["checkout"], env);
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-pg-restart-client` });
		await client.start();
		await client.waitForServices(["api", "checkout", ...PARTICIPANTS], 150_000);
		const { default: knexFactory } = await import("knex");
		db = knexFactory({ client: "pg", connection: pg.url, pool: { min: 0, max: 2 } });
		admin = await adminLogin(http);
		product = await productInStock(http, admin, { stock: STOCK, price: 1000 });
		shoppers = await Promise.all(Array.from({ length: SHOPPERS }, () => verifiedCustomer(http, admin)));
	});

	after(async () => {
		if (rows.length) {
			console.log(`\n      PostgreSQL restarted:\n${rows.map(r => `        ${r}`).join("\n")}\n`);
			writeReliabilityFigures("postgres-restart", `Last run (${new Date().toISOString().slice(0, 10)}, ${SHOPPERS} shoppers, every service its own process):

| fault | orders placed (terminal) | readiness 503 seen | first order confirmed after the database was back | books balanced after the load | answers |
|---|---|---|---|---|---|
${rows.join("\n")}`);
		}
		await client?.stop().catch(() => undefined);
		await Promise.all([checkout?.kill(), api?.kill(), participants?.kill()]);
		await db?.destroy().catch(() => undefined);
		pg?.destroy();
	});

	const books = () => checkBooks(db, { [product.sku]: STOCK }, shoppers.map(c => c.id));

	async function underLoad(name: string, fault: () => Promise<void>) {
		const load = newLoad();
		const start = Date.now();
		const until = start + 25_000;
		const running = shoppers.map((c, i) => runShopper(http, product.id, c, `${name.replace(/\W+/g, "")}-${i}`, until, load));
		let readiness503 = 0;
		let sampling = true;
		const sampler = (async () => {
			while (sampling) {
				const r = await http.get("/api/health/ready").catch(() => ({ status: 0 }));
				if (r.status === 503) readiness503++;
				await sleep(250);
			}
		})();
		// Orders under way first, then the fault.
		await eventually(() => load.endedAt.length >= 5, 60_000, "orders completing before the fault").catch(err => {
			throw new Error(`${err.message}; answers so far ${JSON.stringify(load.statuses)}, ${load.placed.length} placed, bad: ${load.bad.slice(0, 3).join(" | ")}`);
		});
		const backAt = await fault().then(() => Date.now());
		const firstAfter = await eventually(() => load.endedAt.find(t => t > backAt) ?? null, 90_000, "an order confirmed after the database came back");
		await Promise.all(running);
		sampling = false;
		await sampler;
		// Readiness is 200 again by itself.
		await eventually(async () => (await http.get("/api/health/ready")).status === 200, 30_000, "readiness 200 after the restart");
		const loadEnd = Date.now();
		const balanced = await eventually(async () => ((await books()).problems.length === 0 ? true : null), 60_000, "the books to balance").catch(async err => {
			throw new Error(`${err.message}: ${(await books()).problems.join("; ")}`);
		});
		expect(balanced).to.equal(true);
		const balancedAfter = Date.now() - loadEnd;
		expect(load.bad, load.bad.join("\n")).to.deep.equal([]);
		// Every key asked once more answers its order, which ended.
		for (const { c, key } of load.placed) {
			const a = await placeCard(http, c, key);
			expect(a.status, `${key}: ${JSON.stringify(a.body)}`).to.equal(202);
			expect(a.body.orderId).to.equal(placeIds(c.id, key).orderId);
			expect(a.body.status).to.be.oneOf(["confirmed", "cancelled", "payment_failed"]);
		}
		const terminal = Object.values(load.outcomes).reduce((n, v) => n + v, 0);
		rows.push(
			`| ${name} | ${load.placed.length} (${terminal}: ${Object.entries(load.outcomes).map(([k, v]) => `${k} ${v}`).join(", ")}) | ${readiness503 > 0 ? `yes (${readiness503} samples)` : "no"} | ${((firstAfter - backAt) / 1000).toFixed(1)} s | ${(balancedAfter / 1000).toFixed(1)} s | ${Object.entries(load.statuses).map(([k, v]) => `${k} × ${v}`).join(", ")} |`
		);
		return { readiness503 };
	}

	it("restarted (pg_ctl restart -m fast): no service restarted by hand, every order terminal, books exact, every key answers its order", async () => {
		await underLoad("restart", async () => {
			pg.restart();
		});
	});

	it("stopped for 5 s, then started: readiness 503 while it is down and 200 after, nothing lost, books exact", async () => {
		const { readiness503 } = await underLoad("stop 5 s", async () => {
			pg.stop();
			await sleep(5000);
			pg.start();
		});
		expect(readiness503, "readiness said 503 while the database was down").to.be.greaterThan(0);
	});
});
