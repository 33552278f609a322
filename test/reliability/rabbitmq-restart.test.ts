/**
 * RabbitMQ restarted twice in a row under a checkout load, on the real system as processes
 * (a private RabbitMQ node the test stops and starts; the machine's Postgres and Redis):
 * nobody restarts a service by hand, every order ends within a minute, the books balance,
 * add-to-cart answers come back. Also: an event published before its consumer ever ran is
 * delivered once the consumer starts (the publishers declare every consumer's queue).
 *
 * The figures (requests served, time to recover) are printed and written to
 * docs/reliability.md's RabbitMQ section when RELIABILITY_WRITE_DOCS=1.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import amqp from "amqplib";
import knexFactory, { Knex } from "knex";
import { eventually } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { spawnServices, ServiceProcess } from "../support/processes";
import { PrivateRabbit, startPrivateRabbit } from "../support/private-rabbit";
import { adminLogin, CARDS, readyCheckout, verifiedCustomer } from "../support/shop";
import { writeReliabilityFigures } from "../support/reliability-doc";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
const CLIENTS = 6;
const INITIAL_STOCK = 100_000;
const TERMINAL = ["confirmed", "shipped", "delivered", "cancelled", "payment_failed"];

interface Answer {
	at: number;
	what: "add" | "ready" | "place";
	status: number;
	body?: unknown;
}

describe("RabbitMQ restarted twice under a checkout load (services as processes, private RabbitMQ node)", function () {
	this.timeout(300_000);
	const run = process.env.TEST_RUN_ID!;
	const env: Record<string, string> = {};
	const port = String(33000 + Math.floor(Math.random() * 2000));
	const http = new Http(`http://127.0.0.1:${port}`);
	let rabbit: PrivateRabbit;
	let db: Knex;
	const procs: ServiceProcess[] = [];
	let admin: string;
	let product: { id: string; sku: string };

	before(async function () {
		this.timeout(180_000);
		rabbit = await startPrivateRabbit();
		Object.assign(env, {
			TRANSPORTER: rabbit.url,
			NAMESPACE: `${run}-rr`,
			SCHEMA_PREFIX: `${run}_rr_`,
			REDIS_PREFIX: `${run}:rr:`,
			LOG_LEVEL: process.env.RELIABILITY_LOG_LEVEL ?? "error"
		});
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL, pool: { min: 0, max: 2 } });
		// Everything but inventory (and the services that need it for every order).
		procs.push(spawnServices(["api"], { ...env, PORT: port }));
		procs.push(spawnServices(["customers", "notifications", "catalog", "carts"], env));
		await eventually(async () => (await http.get("/api/health/live")).status === 200, 90_000, "the gateway to listen");
		admin = await eventually(() => adminLogin(http).catch(() => null), 90_000, "admin login");
		// Each service of a process registers as soon as it has started, so customers answering
		// says nothing of the catalog (still migrating on a busy machine): wait for it too.
		await eventually(async () => (await http.get("/api/categories")).status === 200, 90_000, "the gateway to reach the catalog");
	});

	after(async function () {
		this.timeout(120_000);
		try {
			await Promise.all(procs.map(p => p.kill()));
			await db?.destroy();
		} finally {
			await rabbit?.stop();
		}
	});

	const schema = (service: string) => `${env.SCHEMA_PREFIX}${service}`;

	it("an event published before its consumer ever ran waits in the consumer's queue and is handled once it starts", async () => {
		const category = expectStatus(await http.post("/api/categories", { name: `Reliability ${randomUUID().slice(0, 8)}` }, admin), 201);
		product = expectStatus(
			await http.post("/api/products", { name: "Restart-proof kettle", description: "Boils", price: { amount: 4999, currency: "PLN" }, categoryId: category.id, initialStock: INITIAL_STOCK }, admin),
			201
		);
		expectStatus(await http.post(`/api/products/${product.id}/activate`, {}, admin), 200);
		// No inventory process has ever run in this namespace, yet its queue exists and holds the event.
		const conn = await amqp.connect(rabbit.url);
		try {
			const ch = await conn.createChannel();
			const queue = `inventory.${env.NAMESPACE}.product.created`;
			await eventually(async () => (await ch.checkQueue(queue)).messageCount >= 1, 20_000, `product.created to wait in ${queue}`);
		} finally {
			await conn.close();
		}
		procs.push(spawnServices(["inventory", "orders", "payments"], env));
		procs.push(spawnServices(["shipping", "promotions", "addons", "checkout"], env));
		const stock = await eventually(async () => {
			const r = await http.get(`/api/inventory/${product.sku}`, admin);
			return r.status === 200 ? r.body : null;
		}, 90_000, "inventory to create the stock row from the waiting event");
		expect(stock.onHand).to.equal(INITIAL_STOCK);
	});

	it("two stop_app / start_app in a row during checkouts: every order ends, books balance, carts and readiness recover", async () => {
		expect(product, "the product of the previous test").to.not.equal(undefined);
		const customers = [];
		for (let i = 0; i < CLIENTS; i++) customers.push(await verifiedCustomer(http, admin));
		const answers: Answer[] = [];
		const placed: string[] = [];
		const readiness: Array<{ at: number; status: number }> = [];
		let stop = false;

		const shopper = async (token: string) => {
			while (!stop) {
				const add = await http.post("/api/cart/items", { productId: product.id, quantity: 1 }, token).catch(() => ({ status: 0, body: null }));
				answers.push({ at: Date.now(), what: "add", status: add.status, body: add.status === 200 ? undefined : add.body });
				if (add.status !== 200) {
					await sleep(200);
					continue;
				}
				// Address, shipping method and card chosen for this cart's checkout.
				const ready = await readyCheckout(http, token).then(
					() => 200,
					(err: Error) => Number(/got (\d+)/.exec(err.message)?.[1] ?? 0)
				);
				answers.push({ at: Date.now(), what: "ready", status: ready });
				if (ready !== 200) {
					await sleep(200);
					continue;
				}
				const place = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, token).catch(() => ({ status: 0, body: null }));
				answers.push({ at: Date.now(), what: "place", status: place.status, body: place.status === 202 ? undefined : place.body });
				if (place.status !== 202) {
					await sleep(200);
					continue;
				}
				placed.push(place.body.orderId);
				// Like a storefront: wait for the order to settle before shopping again.
				const until = Date.now() + 30_000;
				while (!stop && Date.now() < until) {
					const o = await http.get(`/api/orders/${place.body.orderId}`, token).catch(() => null);
					if (o?.status === 200 && TERMINAL.includes(o.body.status)) break;
					await sleep(250);
				}
			}
		};
		const prober = async () => {
			while (!stop) {
				const r = await http.get("/api/health/ready").catch(() => ({ status: 0 }));
				readiness.push({ at: Date.now(), status: r.status });
				await sleep(500);
			}
		};

		const load = [...customers.map(c => shopper(c.token)), prober()];
		const recoveries: Array<{ stoppedAt: number; startedAt: number; addBack: number; placeBack: number }> = [];
		const failingAfter = (t: number) => answers.find(a => a.at >= t && (a.status >= 500 || a.status === 0))?.at ?? t;
		try {
			// Warm up: every shopper has placed an order before the broker goes.
			await eventually(async () => placed.length >= CLIENTS, 90_000, "every shopper to place an order before the first restart").catch(err => {
				throw new Error(`${err.message}; answers: ${JSON.stringify(answers.filter(a => a.status !== 200).slice(0, 5))}, ${answers.length} in all`);
			});
			for (let cycle = 0; cycle < 2; cycle++) {
				await rabbit.stopApp();
				const stoppedAt = Date.now(); // stop_app has returned: the broker is down
				await sleep(5000);
				await rabbit.startApp();
				const startedAt = Date.now();
				const back = (what: Answer["what"], ok: number) => answers.find(a => a.at > startedAt && a.what === what && a.status === ok)?.at;
				const addBack = await eventually(async () => back("add", 200), 60_000, `add-to-cart to answer 200 after restart ${cycle + 1}`);
				const placeBack = await eventually(async () => back("place", 202), 60_000, `a checkout to be accepted after restart ${cycle + 1}`);
				recoveries.push({ stoppedAt, startedAt, addBack, placeBack });
			}
			await sleep(10_000); // steady load after the second restart
		} finally {
			stop = true;
			await Promise.all(load);
		}
		const loadEnd = Date.now();

		// Every order ends within a minute of the load's end.
		const orders = await eventually(
			async () => {
				const rows = await db.withSchema(schema("orders")).table("orders").select("id", "status", "payment_id");
				return rows.every(r => TERMINAL.includes(r.status)) ? rows : null;
			},
			60_000,
			"every order to reach a terminal status"
		);

		// The books: stock, reservations, payments and orders agree.
		const stock = await db.withSchema(schema("inventory")).table("stock").where({ sku: product.sku }).first();
		const reservations = await db.withSchema(schema("inventory")).table("reservations").where({ sku: product.sku });
		const sum = (status: string) => reservations.filter(r => r.status === status).reduce((n, r) => n + r.quantity, 0);
		expect(stock.on_hand, "on hand = initial − deducted").to.equal(INITIAL_STOCK - sum("deducted"));
		expect(stock.reserved, "reserved = open reservations").to.equal(sum("held"));
		const payments = await db.withSchema(schema("payments")).table("payments").select("order_id", "status");
		const statusOf = new Map(orders.map(o => [o.id, o.status]));
		const confirmed = orders.filter(o => ["confirmed", "shipped", "delivered"].includes(o.status));
		for (const p of payments.filter(p => ["authorized", "captured"].includes(p.status))) {
			expect(statusOf.get(p.order_id), `order of authorized payment ${p.order_id}`).to.be.oneOf(["confirmed", "shipped", "delivered"]);
		}
		const held = new Set(reservations.filter(r => ["held", "deducted"].includes(r.status)).map(r => r.order_id));
		for (const o of confirmed) {
			expect(
				payments.filter(p => p.order_id === o.id && ["authorized", "captured"].includes(p.status)),
				`payment of confirmed order ${o.id} (payments: ${JSON.stringify(payments.filter(p => p.order_id === o.id))})`
			).to.have.length(1);
			expect(held.has(o.id), `stock of confirmed order ${o.id}`).to.equal(true);
		}
		for (const o of orders.filter(o => !["confirmed", "shipped", "delivered"].includes(o.status))) {
			expect(held.has(o.id), `no stock held for ${o.status} order ${o.id}`).to.equal(false);
		}
		const locked = await db.withSchema(schema("carts")).table("carts").whereNotNull("locked_by").where({ status: "active" }).count<{ n: string }[]>("* as n");
		expect(Number(locked[0]!.n), "carts left locked").to.equal(0);

		// Nobody restarted a service: every process is the one started before the load.
		for (const p of procs) expect(p.child.exitCode, "a service process exited").to.equal(null);

		// Add-to-cart and checkout answers recovered: the last seconds of load had no server errors.
		const lastSeconds = answers.filter(a => a.at > loadEnd - 5000);
		expect(lastSeconds.filter(a => a.status >= 500 || a.status === 0).map(a => `${a.what} ${a.status}`), "5xx in the last 5 s of load").to.deep.equal([]);
		expect(readiness.at(-1)?.status, "readiness after the restarts").to.equal(200);

		const figures = {
			ordersPlaced: placed.length,
			orders: orders.length,
			confirmed: confirmed.length,
			answers: answers.length,
			byStatus: answers.reduce<Record<string, number>>((m, a) => ((m[`${a.what} ${a.status}`] = (m[`${a.what} ${a.status}`] ?? 0) + 1), m), {}),
			recoveries: recoveries.map(r => ({
				addToCartBackAfterStartAppMs: r.addBack - r.startedAt,
				checkoutBackAfterStartAppMs: r.placeBack - r.startedAt,
				brokerDownMs: r.startedAt - r.stoppedAt,
				shoppersSaw5xxForMs: r.addBack - failingAfter(r.stoppedAt - 5000)
			})),
			readinessNot200DuringOutage: readiness.filter(r => r.status !== 200).length,
			readinessSamples: readiness.length
		};
		console.log("RabbitMQ restart figures:", JSON.stringify(figures, null, 2));
		writeFigures(figures);
	});
});

/** The measured block of docs/reliability.md's RabbitMQ section. */
function writeFigures(f: any) {
	const rows = f.recoveries
		.map((r: any, i: number) => `| ${i + 1} | ${(r.brokerDownMs / 1000).toFixed(1)} s | ${(r.addToCartBackAfterStartAppMs / 1000).toFixed(1)} s | ${(r.checkoutBackAfterStartAppMs / 1000).toFixed(1)} s | ${(r.shoppersSaw5xxForMs / 1000).toFixed(1)} s |`)
		.join("\n");
	writeReliabilityFigures("rabbitmq-restart", `Last run (${new Date().toISOString().slice(0, 10)}, ${CLIENTS} shoppers, ${f.orders} orders, ${f.confirmed} confirmed):

| restart | broker down (stop_app done → start_app done) | add-to-cart 200 again after start_app | checkout accepted again after start_app | shoppers saw errors for (first 5xx → first 200) |
|---|---|---|---|---|
${rows}

Answers during the run: ${Object.entries(f.byStatus).map(([k, v]) => `${k} × ${v}`).join(", ")}. Readiness answered non-200 in ${f.readinessNot200DuringOutage} of ${f.readinessSamples} samples (every 500 ms).`);
}
