/**
 * Losing Redis, as the gateway sees it. A private, disposable redis-server (never the shared one)
 * serves a gateway and a checkout process; it is killed and started again:
 * - readiness says 503 naming redis while it is down, 200 once it truly answers again;
 * - what needs Redis (the saga store behind checkout) answers a retryable 503, never 500;
 * - what does not need it keeps working: the rate limiter counts in memory meanwhile.
 * And readiness checks that the transporter really carries messages, not only that it says so.
 */
import { expect } from "chai";
import { ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import net from "node:net";
import type { AddressInfo } from "node:net";
import Redis from "ioredis";
import type { ServiceBroker } from "moleculer";
import apiSchema from "../../services/api.service";
import { hit, RedisRateLimitStore, ResilientRateLimitStore } from "../../services/api/rate-limit";
import { createBroker } from "../../bin/broker";
import { SERVICE_NAMES } from "../../services";
import { Cluster, eventually, startCluster } from "../support/cluster";
import { Http } from "../support/http";
import { spawnServices, ServiceProcess } from "../support/processes";
import { adminLogin, verifiedCustomer } from "../support/shop";

const PARTICIPANTS = SERVICE_NAMES.filter(name => name !== "api" && name !== "checkout");

async function freePort(): Promise<number> {
	const server = net.createServer();
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	const port = (server.address() as AddressInfo).port;
	await new Promise(resolve => server.close(resolve));
	return port;
}

/** A disposable redis-server of this test: no persistence, its own port, stopped by its own pid. */
class PrivateRedis {
	child: ChildProcess | null = null;
	constructor(public port: number) {}
	get url() {
		return `redis://127.0.0.1:${this.port}`;
	}
	async start() {
		this.child = spawn("redis-server", ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
		await eventually(async () => {
			const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
			probe.on("error", () => undefined);
			try {
				await probe.connect();
				return (await probe.ping()) === "PONG";
			} finally {
				probe.disconnect();
			}
		}, 10_000, "the private redis-server");
	}
	async kill() {
		const child = this.child;
		this.child = null;
		if (!child || child.exitCode !== null) return;
		await new Promise(resolve => {
			child.once("exit", resolve);
			child.kill("SIGKILL");
		});
	}
}

describe("losing Redis (a private redis-server)", function () {
	this.timeout(180_000);
	let redis: PrivateRedis;
	let cluster: Cluster;
	let gateway: ServiceBroker;
	let checkout: ServiceProcess;
	let http: Http;
	let admin: string;
	let customer: { token: string };

	before(async () => {
		redis = new PrivateRedis(await freePort());
		await redis.start();
		cluster = await startCluster([PARTICIPANTS]);
		// The saga store of this checkout process lives in the private Redis.
		checkout = spawnServices(["checkout"], { REDIS_URL: redis.url });
		gateway = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-redis-gw` });
		gateway.createService({ mixins: [apiSchema], name: "api", settings: { port: 0, redisUrl: redis.url } } as any);
		await gateway.start();
		await gateway.waitForServices([...PARTICIPANTS, "checkout"], 150_000);
		http = new Http(`http://127.0.0.1:${((gateway.getLocalService("api") as any).server.address() as AddressInfo).port}`);
		admin = await adminLogin(http);
		customer = await verifiedCustomer(http, admin);
	});
	after(async () => {
		await checkout?.kill();
		await gateway?.stop().catch(() => undefined);
		await cluster?.stop();
		await redis?.kill();
	});

	it("with Redis up: ready, and the saga store answers", async () => {
		const ready = await http.get("/api/health/ready");
		expect(ready.status, JSON.stringify(ready.body)).to.equal(200);
		expect(ready.body.checks).to.deep.equal({ rabbitmq: "up", postgres: "up", redis: "up" });
		expect((await http.get("/api/admin/sagas", admin)).status).to.equal(200);
	});

	it("with Redis down: readiness 503 naming redis; saga reads 503 (not 500); the rest, rate limits included, keeps working", async () => {
		await redis.kill();
		const notReady = await eventually(async () => {
			const r = await http.get("/api/health/ready");
			return r.status === 503 ? r : null;
		}, 10_000, "readiness to report the outage");
		expect(notReady.body.down).to.deep.equal(["redis"]);
		expect(notReady.body.checks.redis).to.equal("down");

		for (const [path, token] of [["/api/admin/sagas", admin], [`/api/checkout/status/${randomUUID()}`, customer.token], [`/api/admin/sagas/${randomUUID()}`, admin]] as const) {
			const r = await http.get(path, token);
			expect(r.status, `${path} ${JSON.stringify(r.body)}`).to.equal(503);
			expect(r.body.type).to.equal("SERVICE_UNAVAILABLE");
		}
		// No Redis needed here: the limiter falls back to this replica's memory and the request goes on.
		expect((await http.get("/api/products")).status).to.equal(200);
		expect((await http.get("/api/cart", customer.token)).status).to.equal(200);
		expect((await http.post("/api/auth/login", { email: "nobody@example.com", password: "Wrong-pass-1" })).status).to.equal(401);
	});

	it("the in-memory fallback still limits: the 21st of 20 allowed attempts is refused", async () => {
		const dead = new Redis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: true });
		dead.on("error", () => undefined);
		const switches: boolean[] = [];
		const store = new ResilientRateLimitStore(new RedisRateLimitStore(dead, "x:"), degraded => switches.push(degraded));
		const limit = { name: "auth", max: 20, windowMs: 60_000 };
		for (let i = 1; i <= 20; i++) expect((await hit(store, limit, "203.0.113.9")).allowed, `attempt ${i}`).to.equal(true);
		expect((await hit(store, limit, "203.0.113.9")).allowed).to.equal(false);
		expect(switches).to.deep.equal([true]);
		await store.close();
	});

	it("with Redis back: readiness 200 again and the saga store answers, nothing restarted by hand", async () => {
		await redis.start();
		await eventually(async () => (await http.get("/api/health/ready")).status === 200, 20_000, "readiness to recover");
		await eventually(async () => (await http.get("/api/admin/sagas", admin)).status === 200, 20_000, "the saga store to answer");
		expect(checkout.child.exitCode).to.equal(null);
	});

	it("readiness checks that the transporter carries messages: a dead channel under a live connection is not ready", async () => {
		const transit: any = (gateway as any).transit;
		expect(transit.connected).to.equal(true);
		await transit.tx.channel.close();
		// Still "connected" as far as the flag goes — the round trip tells the truth.
		const r = await http.get("/api/health/ready");
		if (r.status === 200) {
			// Only if the transporter has really reopened its channel already: then calls must work.
			await gateway.call("catalog.listCategories", {}, { timeout: 3000 });
		} else {
			expect(r.status).to.equal(503);
			expect(r.body.down).to.include("rabbitmq");
		}
	});
});
