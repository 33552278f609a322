/**
 * Graceful shutdown: a stopping process finishes the requests it holds and takes no new one.
 * - A gateway being stopped answers its in-flight request, says 503 on readiness and 503 +
 *   Connection: close (retryable) to new requests, then closes its port.
 * - A participant being stopped finishes the call it is running before it leaves.
 * - A replica being stopped takes no new request from the shared queues while it finishes its
 *   own: another replica answers them (200, not 503).
 */
import { expect } from "chai";
import type { AddressInfo } from "node:net";
import knexFactory, { Knex } from "knex";
import type { ServiceBroker } from "moleculer";
import apiSchema from "../../services/api.service";
import { createBroker } from "../../bin/broker";
import { ReadCache } from "../../services/api/read-cache";
import { eventually } from "../support/cluster";
import { Http } from "../support/http";

let seq = 0;

/**
 * Makes reading the categories slow the way a busy database would: the test holds a lock on the
 * table, the catalog's query waits inside its handler. `release()` lets it go on.
 */
async function holdCategories(db: Knex) {
	const table = `${process.env.SCHEMA_PREFIX}catalog.categories`;
	const trx = await db.transaction();
	await trx.raw(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
	return {
		waiting: async () => Number((await db.raw(`SELECT count(*)::int AS n FROM pg_locks WHERE relation = ?::regclass AND NOT granted`, [table])).rows[0].n),
		release: () => trx.commit()
	};
}

async function gatewayNode(): Promise<{ broker: ServiceBroker; http: Http }> {
	const broker = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-sd-gw${++seq}` });
	broker.createService({ mixins: [apiSchema], name: "api", settings: { port: 0 } } as any);
	await broker.start();
	// The held read must reach the catalog every time, not the gateway's own copy of it.
	(broker.getLocalService("api") as any).readCache = new ReadCache(0);
	await broker.waitForServices(["catalog"], 30_000);
	return { broker, http: new Http(`http://127.0.0.1:${((broker.getLocalService("api") as any).server.address() as AddressInfo).port}`) };
}

describe("graceful shutdown", function () {
	this.timeout(90_000);
	let catalog: ServiceBroker;
	let db: Knex;
	const others: ServiceBroker[] = [];
	const locks: Array<{ release(): Promise<unknown> }> = [];
	afterEach(async () => {
		for (const l of locks.splice(0)) await l.release().catch(() => undefined);
	});

	before(async () => {
		catalog = createBroker({ services: ["catalog", "inventory"], nodeID: `${process.env.TEST_RUN_ID}-sd-catalog` });
		await catalog.start();
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
	});
	after(async () => {
		await Promise.all([catalog, ...others].map(b => b.stop().catch(() => undefined)));
		await db?.destroy();
	});

	it("a stopping gateway answers what it holds, refuses new requests with a retryable 503, then closes its port", async () => {
		const { broker, http } = await gatewayNode();
		others.push(broker);
		await eventually(async () => (await http.get("/api/health/ready")).status === 200, 10_000, "the gateway to be ready");
		const lock = await holdCategories(db);
		locks.push(lock);
		const inFlight = http.get("/api/categories");
		await eventually(async () => (await lock.waiting()) === 1, 5000, "the request to reach the catalog's query");

		const stopping = broker.stop();
		const ready = await eventually(async () => {
			const r = await http.get("/api/health/ready");
			return r.status === 503 ? r : null;
		}, 5000, "readiness to say stopping");
		expect(ready.body.status).to.equal("stopping");
		const refused = await http.get("/api/products");
		expect(refused.status).to.equal(503);
		expect(refused.body.type).to.equal("SERVICE_UNAVAILABLE");
		expect(refused.headers.get("connection")).to.equal("close");
		expect(refused.headers.get("retry-after")).to.equal("1");

		await lock.release();
		const answered = await inFlight;
		expect(answered.status, JSON.stringify(answered.body)).to.equal(200);
		await stopping;
		const after = await http.get("/api/health/live").then(
			r => r.status,
			(err: any) => err?.cause?.code ?? "refused"
		);
		expect(after).to.equal("ECONNREFUSED");
	});

	it("a stopping participant finishes the call it is running before it leaves; afterwards its routes are a retryable 503", async () => {
		const { broker, http } = await gatewayNode();
		others.push(broker);
		await eventually(async () => (await http.get("/api/categories")).status === 200, 10_000, "the gateway to reach the catalog");
		const lock = await holdCategories(db);
		locks.push(lock);
		const inFlight = http.get("/api/categories");
		await eventually(async () => (await lock.waiting()) === 1, 5000, "the request to reach the catalog's query");
		const stopping = catalog.stop();
		await new Promise(r => setTimeout(r, 1000)); // the catalog is stopping, its call still running
		await lock.release();
		await stopping;
		const answered = await inFlight;
		expect(answered.status, JSON.stringify(answered.body)).to.equal(200);
		await eventually(async () => (await http.get("/api/categories")).status === 503, 10_000, "the catalog's routes to answer 503");
	});

	it("a stopping replica takes no new request while it finishes its own: the other replica answers them, no 503", async () => {
		const a = createBroker({ services: ["catalog"], nodeID: `${process.env.TEST_RUN_ID}-sd-replica-a` });
		others.push(a);
		await a.start();
		const { broker, http } = await gatewayNode();
		others.push(broker);
		await eventually(async () => (await http.get("/api/vendors")).status === 200, 10_000, "the gateway to reach the catalog");
		// Two calls held in replica A (the only one yet), then replica B joins.
		const lock = await holdCategories(db);
		locks.push(lock);
		const held = [http.get("/api/categories"), http.get("/api/categories")];
		await eventually(async () => (await lock.waiting()) >= 2, 5000, "both calls to reach A's query");
		const b = createBroker({ services: ["catalog"], nodeID: `${process.env.TEST_RUN_ID}-sd-replica-b` });
		others.push(b);
		await b.start();
		await eventually(() => broker.registry.getServiceList({ onlyAvailable: true }).filter((s: any) => s.name === "catalog").length === 2, 10_000, "replica B in the gateway's registry");

		const stopping = a.stop();
		await eventually(() => a.stopping, 5000, "A to be stopping (its two calls still running)");
		const meanwhile = await Promise.all(Array.from({ length: 30 }, () => http.get("/api/vendors")));
		expect(meanwhile.map(r => r.status), JSON.stringify(meanwhile.find(r => r.status !== 200)?.body)).to.deep.equal(Array(30).fill(200));
		await lock.release();
		const answered = await Promise.all(held);
		expect(answered.map(r => r.status)).to.deep.equal([200, 200]);
		await stopping;
	});
});
