/**
 * A rolling restart during a checkout load, as a deployment does it: for each service process in
 * turn a new one is started, and once it serves, the old one gets SIGTERM and stops gracefully
 * (infra/amqp-transporter.ts stopTakingRequests, then Moleculer's stop: running calls finish,
 * channel consumers cancelled, the outbox batch in progress finished). The shop runs as OS
 * processes — catalog+inventory, carts, orders+payments, the other participants, two checkout
 * replicas and the gateway — and ten shoppers add to their carts and place card orders in a loop.
 * Checked:
 * - every old process exits by itself with code 0;
 * - no shopper ever got a 404 or a 5xx: not even a retryable 503 (a new replica was serving
 *   before the old one stopped), on add-to-cart and place alike;
 * - every key retried afterwards answers its order (202), and the books balance exactly.
 * The gateway is not restarted here: `shutdown.test.ts` shows it answers what it holds and
 * refuses new requests with a retryable 503 while a load balancer moves its clients elsewhere.
 */
import { expect } from "chai";
import type { Knex } from "knex";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import { placeIds } from "../../services/checkout/place-ids";
import { checkBooks } from "../support/books";
import { eventually } from "../support/cluster";
import { Http } from "../support/http";
import { freePort } from "../support/private-redis";
import { writeReliabilityFigures } from "../support/reliability-doc";
import { spawnServices, ServiceProcess } from "../support/processes";
import { adminLogin, productInStock, verifiedCustomer } from "../support/shop";
import { Customer, newLoad, placeCard, shopper } from "../support/shoppers";

/** Each process of the deployment; the checkout runs twice. */
const PROCESSES: Array<{ name: string; services: string[] }> = [
	{ name: "catalog+inventory", services: ["catalog", "inventory"] },
	{ name: "carts", services: ["carts"] },
	{ name: "orders+payments", services: ["orders", "payments"] },
	{ name: "customers+others", services: ["customers", "notifications", "promotions", "shipping", "addons"] },
	{ name: "checkout A", services: ["checkout"] },
	{ name: "checkout B", services: ["checkout"] }
];
const SHOPPERS = 10;
const STOCK = 100_000;
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

describe("a rolling restart of every service process during a checkout load", function () {
	this.timeout(600_000);
	const running = new Map<string, { proc: ServiceProcess; nodeID: string }>();
	const stopped: ServiceProcess[] = [];
	let api: ServiceProcess;
	let client: ServiceBroker;
	let http: Http;
	let db: Knex;
	let admin: string;
	let shoppers: Customer[];
	let product: { id: string; sku: string };
	const figures: string[] = [];

	const start = (p: (typeof PROCESSES)[number]) => {
		const nodeID = `${process.env.TEST_RUN_ID}-${p.name.replace(/\W+/g, "-")}-${Date.now().toString(36)}`;
		return { proc: spawnServices(p.services, { NODE_ID: nodeID }), nodeID };
	};
	const serving = (p: (typeof PROCESSES)[number], nodeID: string) =>
		p.services.every(svc => client.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === svc && s.nodeID === nodeID));

	before(async () => {
		const port = String(await freePort());
		http = new Http(`http://127.0.0.1:${port}`);
		for (const p of PROCESSES) running.set(p.name, start(p));
		api = spawnServices(["api"], { PORT: port });
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-rolling-client` });
		await client.start();
		await client.waitForServices(["api", ...new Set(PROCESSES.flatMap(p => p.services))], 120_000);
		const { default: knexFactory } = await import("knex");
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
		admin = await adminLogin(http);
		product = await productInStock(http, admin, { stock: STOCK, price: 1000 });
		shoppers = await Promise.all(Array.from({ length: SHOPPERS }, () => verifiedCustomer(http, admin)));
	});

	after(async () => {
		for (const p of stopped) console.log("stopped", p.output.join("").split("\n").filter(l => l.includes("DIAG") || l.includes("dropped")).slice(-30).join("\n"));
		if (figures.length) console.log(`\n      Rolling restart:\n${figures.map(f => `        ${f}`).join("\n")}\n`);
		await client?.stop().catch(() => undefined);
		await Promise.all([...[...running.values()].map(r => r.proc), ...stopped, api].map(p => p?.kill()));
		await db?.destroy();
	});

	it("each old process exits 0, no shopper sees a 404 or any 5xx, every key answers its order, books exact", async () => {
		const load = newLoad();
		load.strict = true;
		const began = Date.now();
		let stopAt = Number.POSITIVE_INFINITY;
		const loops = shoppers.map((c, i) => (async () => {
			let round = 0;
			while (Date.now() < stopAt) await shopper(http, product.id, c, `rolling-${i}-${round++}`, Math.min(stopAt, Date.now() + 5000), load);
		})());

		await sleep(5000);
		const restarts: string[] = [];
		for (const p of PROCESSES) {
			const old = running.get(p.name)!;
			const fresh = start(p);
			const t0 = Date.now();
			await eventually(() => serving(p, fresh.nodeID), 120_000, `the new ${p.name} serving`);
			const startedIn = Date.now() - t0;
			running.set(p.name, fresh);
			stopped.push(old.proc);
			const t1 = Date.now();
			const exit = new Promise<number | null>(resolve => {
				if (old.proc.child.exitCode !== null) resolve(old.proc.child.exitCode);
				else old.proc.child.once("exit", code => resolve(code));
			});
			old.proc.child.kill("SIGTERM");
			const code = await exit;
			expect(code, `${p.name} exited with ${code}: ${old.proc.output.slice(-5).join("")}`).to.equal(0);
			restarts.push(`${p.name}: new process serving after ${(startedIn / 1000).toFixed(1)} s, old one stopped in ${((Date.now() - t1) / 1000).toFixed(1)} s (exit 0)`);
			await sleep(2000);
		}
		stopAt = Date.now();
		await Promise.all(loops);
		const seconds = (Date.now() - began) / 1000;

		// On failure, what the gateway said about each refused request: which action, on which node.
		const gatewaySaid = () => api.output.join("").split("\n").filter(l => / (WARN|ERROR) +API:/.test(l)).slice(-20).join("\n");
		expect(load.bad, `${load.bad.join("\n")}\n${gatewaySaid()}`).to.deep.equal([]);
		const retries = await Promise.all(load.placed.map(async ({ c, key }) => ({ key, c, a: await placeCard(http, c, key) })));
		for (const { key, c, a } of retries) {
			expect(a.status, `retry of ${key}: ${JSON.stringify(a.body)}`).to.equal(202);
			expect(a.body.orderId).to.equal(placeIds(c.id, key).orderId);
		}
		const books = await eventually(async () => {
			const b = await checkBooks(db, { [product.sku]: STOCK }, shoppers.map(c => c.id));
			return b.problems.length === 0 ? b : null;
		}, 60_000, "the books to balance").catch(async err => {
			const b = await checkBooks(db, { [product.sku]: STOCK }, shoppers.map(c => c.id));
			throw new Error(`${err.message}: ${b.problems.join("; ")}`);
		});

		figures.push(...restarts);
		figures.push(
			`${load.placed.length} places by ${SHOPPERS} shoppers in ${seconds.toFixed(0)} s; outcomes ${JSON.stringify(load.outcomes)}; ` +
				`place answers ${JSON.stringify(load.statuses)}; other answers ${JSON.stringify(load.steps)}; orders ${JSON.stringify(books.orders)}; ` +
				`${retries.length} final retries all 202; books exact`
		);
		writeReliabilityFigures(
			"rolling-restart",
			`Last run (${new Date().toISOString().slice(0, 10)}, ${SHOPPERS} shoppers, ${seconds.toFixed(0)} s):\n\n${restarts.map(r => `- ${r}`).join("\n")}\n\n` +
				`${load.placed.length} orders placed: ${JSON.stringify(load.outcomes)}; answers to place ${JSON.stringify(load.statuses)}, ` +
				`to the other requests ${JSON.stringify(load.steps)}; every key's retry 202 with its order; books exact.`
		);
	});
});
