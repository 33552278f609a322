/**
 * kill -9 of each service process in turn during a checkout load. The shop runs as OS processes
 * the way it is deployed — catalog+inventory, carts, orders+payments, the other participants, two
 * checkout replicas and the gateway — and ten shoppers place card orders in a loop (retrying with
 * the same Idempotency-Key on a 503 or an order still under way). Each group in turn is SIGKILLed
 * and started again ~3 s later. Then:
 * - no shopper ever got a 404 or a 5xx other than a retryable 503, and every key retried answers
 *   its order (202) — no order confirmed that its customer cannot learn about;
 * - the books balance exactly;
 * - what the shoppers saw around each kill is printed (orders ended while the group was down).
 * The gateway is not killed here: a request in flight in a killed gateway is the client's to retry.
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

const GROUPS: Record<string, string[]> = {
	"catalog+inventory": ["catalog", "inventory"],
	carts: ["carts"],
	"orders+payments": ["orders", "payments"],
	"customers+others": ["customers", "notifications", "promotions", "shipping", "addons"],
	"checkout (one of two replicas)": ["checkout"]
};
const SHOPPERS = 10;
const STOCK = 100_000;
const ORCHESTRATOR = { SAGA_LEASE_MS: "2000", SAGA_RECOVERY_INTERVAL_MS: "500" };
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

describe("kill -9 of each service process in turn during a checkout load", function () {
	this.timeout(600_000);
	const procs = new Map<string, ServiceProcess>();
	let checkoutB: ServiceProcess;
	let api: ServiceProcess;
	let client: ServiceBroker;
	let http: Http;
	let db: Knex;
	let admin: string;
	let shoppers: Customer[];
	let product: { id: string; sku: string };
	const figures: string[] = [];

	const nodes = new Map<string, string>();
	const spawnGroup = (name: string) => {
		const nodeID = `${process.env.TEST_RUN_ID}-${GROUPS[name]!.join("+")}-${Date.now().toString(36)}`;
		const p = spawnServices(GROUPS[name]!, { ...(name.startsWith("checkout") ? ORCHESTRATOR : {}), NODE_ID: nodeID });
		procs.set(name, p);
		nodes.set(name, nodeID);
		return nodeID;
	};

	before(async () => {
		const port = String(await freePort());
		http = new Http(`http://127.0.0.1:${port}`);
		for (const name of Object.keys(GROUPS)) spawnGroup(name);
		checkoutB = spawnServices(["checkout"], ORCHESTRATOR);
		api = spawnServices(["api"], { PORT: port });
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-node-kill-client` });
		await client.start();
		await client.waitForServices(["api", ...Object.values(GROUPS).flat()], 120_000);
		const { default: knexFactory } = await import("knex");
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
		admin = await adminLogin(http);
		product = await productInStock(http, admin, { stock: STOCK, price: 1000 });
		shoppers = await Promise.all(Array.from({ length: SHOPPERS }, () => verifiedCustomer(http, admin)));
	});

	after(async () => {
		if (figures.length) console.log(`\n      kill -9 in turn:\n${figures.map(f => `        ${f}`).join("\n")}\n`);
		await client?.stop().catch(() => undefined);
		await Promise.all([...procs.values(), checkoutB, api].map(p => p?.kill()));
		await db?.destroy();
	});

	it("books exact, no 404/5xx but retryable 503s, every key answers its order; orders around each kill printed", async () => {
		const load = newLoad();
		const start = Date.now();
		const kills: Array<{ name: string; at: number; upAfter: number; leftRegistryAfter: number | null }> = [];
		let stopAt = Number.POSITIVE_INFINITY;
		const until = { get value() { return stopAt; } };
		const running = shoppers.map((c, i) => (async () => {
			// The loop ends when the kills are done; `shopper` reads its deadline once, so run it in short slices.
			let round = 0;
			while (Date.now() < until.value) await shopper(http, product.id, c, `kill-${i}-${round++}`, Math.min(until.value, Date.now() + 5000), load);
		})());

		await sleep(8000);
		for (const name of Object.keys(GROUPS)) {
			const victim = procs.get(name)!;
			const nodeID = nodes.get(name)!;
			await victim.kill("SIGKILL");
			const at = Date.now();
			let leftRegistryAfter: number | null = null;
			const watch = eventually(() => !client.registry.nodes.get(nodeID)?.available, 20_000, "the node to leave")
				.then(() => void (leftRegistryAfter = Date.now() - at))
				.catch(() => undefined);
			await sleep(3000);
			const freshNode = spawnGroup(name);
			await eventually(() => GROUPS[name]!.every(svc => client.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === svc && s.nodeID === freshNode)), 90_000, `${name} back`);
			await watch;
			kills.push({ name, at, upAfter: Date.now() - at, leftRegistryAfter });
			await sleep(6000);
		}
		stopAt = Date.now();
		await Promise.all(running);
		const endedAt = Date.now();

		expect(load.bad, load.bad.join("\n")).to.deep.equal([]);
		const retries = await Promise.all(load.placed.map(async ({ c, key }) => ({ key, c, a: await eventually(async () => {
			const a = await placeCard(http, c, key);
			return a.status === 503 ? null : a;
		}, 30_000, `an answer to ${key}`) })));
		for (const { key, c, a } of retries) {
			expect(a.status, `retry of ${key}: ${JSON.stringify(a.body)}`).to.equal(202);
			expect(a.body.orderId).to.equal(placeIds(c.id, key).orderId);
		}
		const books = await eventually(async () => {
			const b = await checkBooks(db, { [product.sku]: STOCK }, shoppers.map(c => c.id));
			return b.problems.length === 0 ? b : null;
		}, 90_000, "the books to balance").catch(async err => {
			const b = await checkBooks(db, { [product.sku]: STOCK }, shoppers.map(c => c.id));
			throw new Error(`${err.message}: ${b.problems.join("; ")}`);
		});

		// What the shoppers saw around each kill: orders ended while the group was down, the rate in the
		// 5 s after the kill next to the 5 s before it, and when the dead node left the registry.
		const rate = (from: number, to: number) => load.endedAt.filter(t => t >= from && t < to).length / ((to - from) / 1000);
		const rows: string[] = [];
		for (const k of kills) {
			const down = load.endedAt.filter(t => t >= k.at && t < k.at + k.upAfter).length;
			const firstAfter = load.endedAt.find(t => t >= k.at);
			const before5 = rate(k.at - 5000, k.at);
			const after5 = rate(k.at, k.at + 5000);
			const left = k.leftRegistryAfter === null ? "?" : `${(k.leftRegistryAfter / 1000).toFixed(1)} s`;
			const first = firstAfter === undefined ? "never" : `${((firstAfter - k.at) / 1000).toFixed(1)} s`;
			figures.push(
				`${k.name}: ${down} order(s) ended while it was down (${(k.upAfter / 1000).toFixed(1)} s from the kill until the restarted process served), ` +
					`the first ${first} after the kill; orders/s 5 s before → 5 s after the kill ${before5.toFixed(1)} → ${after5.toFixed(1)}; the dead node left the client's registry ${left} after it`
			);
			rows.push(`| ${k.name} | ${left} | ${(k.upAfter / 1000).toFixed(1)} s | ${down} | ${first} | ${before5.toFixed(1)} → ${after5.toFixed(1)} |`);
		}
		const summary =
			`${load.placed.length} places by ${SHOPPERS} shoppers in ${((endedAt - start) / 1000).toFixed(0)} s; outcomes ${JSON.stringify(load.outcomes)}; answers ${JSON.stringify(load.statuses)}; ` +
			`orders ${JSON.stringify(books.orders)}; payments ${JSON.stringify(books.payments)}; ${retries.length} final retries all 202; books exact`;
		figures.push(summary);
		writeReliabilityFigures(
			"node-kill",
			`Last run (${new Date().toISOString().slice(0, 10)}; each group SIGKILLed, started again 3 s later):\n\n` +
				"| killed | dead node left the registry | restarted process served after | orders ended while down | first order ended after the kill | orders/s, 5 s before → 5 s after the kill |\n|---|---|---|---|---|---|\n" +
				`${rows.join("\n")}\n\n${summary}.`
		);
	});
});
