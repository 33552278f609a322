/**
 * `npm run bench`: places orders through the HTTP gateway of the real system — every service
 * its own process over RabbitMQ, Postgres, Redis (two checkout replicas) — and prints
 * completed checkouts per second and latency percentiles. Settings: BENCH_ORDERS (default 200),
 * BENCH_CONCURRENCY (default 16).
 */
import "../test/support/env";
import { createBroker } from "../bin/broker";
import { cleanup, ensureDatabase } from "../test/support/hooks";
import { Http } from "../test/support/http";
import { spawnServices } from "../test/support/processes";
import { adminLogin, CARDS, productInStock, readyCheckout, verifiedCustomer } from "../test/support/shop";

const ORDERS = Number(process.env.BENCH_ORDERS ?? 200);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);

function percentile(sorted: number[], p: number): number {
	return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function main() {
	// A fresh machine has no test database until something creates it.
	await ensureDatabase();
	const port = String(35000 + Math.floor(Math.random() * 2000));
	const http = new Http(`http://127.0.0.1:${port}`);
	const procs = [
		spawnServices(["api"], { PORT: port }),
		spawnServices(["customers", "notifications"]),
		spawnServices(["catalog", "inventory"]),
		spawnServices(["carts"]),
		spawnServices(["orders", "payments"]),
		spawnServices(["shipping", "promotions", "addons"]),
		spawnServices(["checkout"]),
		spawnServices(["checkout"])
	];
	const client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-bench` });
	try {
		await client.start();
		await client.waitForServices(["api", "customers", "notifications", "catalog", "inventory", "carts", "orders", "payments", "shipping", "promotions", "addons", "checkout"], 90_000);
		const admin = await adminLogin(http);
		const product = await productInStock(http, admin, { stock: ORDERS * 2, price: 1999 });

		console.log(`preparing ${ORDERS} verified customers with a cart…`);
		const customers: Array<{ token: string }> = [];
		for (let i = 0; i < ORDERS; i += CONCURRENCY) {
			const batch = await Promise.all(
				Array.from({ length: Math.min(CONCURRENCY, ORDERS - i) }, async () => {
					const c = await verifiedCustomer(http, admin);
					const add = await http.post("/api/cart/items", { productId: product.id, quantity: 1 }, c.token);
					if (add.status !== 200) throw new Error(`add to cart: ${add.status} ${JSON.stringify(add.body)}`);
					await readyCheckout(http, c.token);
					return c;
				})
			);
			customers.push(...batch);
		}

		console.log(`placing ${ORDERS} orders, ${CONCURRENCY} at a time…`);
		const latencies: number[] = [];
		let failed = 0;
		let next = 0;
		const started = performance.now();
		await Promise.all(
			Array.from({ length: CONCURRENCY }, async () => {
				while (next < customers.length) {
					const c = customers[next++]!;
					const t0 = performance.now();
					const res = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token);
					const ms = performance.now() - t0;
					if (res.status === 202 && res.body.status === "confirmed") latencies.push(ms);
					else failed++;
				}
			})
		);
		const seconds = (performance.now() - started) / 1000;
		latencies.sort((a, b) => a - b);
		const rss = process.memoryUsage().rss;
		console.log("\nplace-order through the gateway (card, saga completes before the answer)");
		console.log(`  checkouts completed : ${latencies.length} of ${ORDERS} (${failed} not confirmed in time)`);
		console.log(`  throughput          : ${(latencies.length / seconds).toFixed(1)} completed checkouts/s over ${seconds.toFixed(1)} s`);
		console.log(`  latency p50 / p95 / p99 : ${percentile(latencies, 50).toFixed(0)} / ${percentile(latencies, 95).toFixed(0)} / ${percentile(latencies, 99).toFixed(0)} ms`);
		console.log(`  concurrency ${CONCURRENCY}, 7 processes (2 checkout replicas), bench client RSS ${(rss / 2 ** 20).toFixed(0)} MiB`);
	} finally {
		await client.stop().catch(() => undefined);
		await Promise.all(procs.map(p => p.kill()));
		await cleanup().catch(() => undefined);
	}
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
