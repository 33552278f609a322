/**
 * `npm run bench`: the real system — every service its own process over RabbitMQ, Postgres and
 * Redis — loaded through the HTTP gateway as a storefront would load it. For each number of
 * checkout replicas asked for it prints and records:
 *   - saturation: completed checkouts/s with BENCH_IN_FLIGHT (64) checkouts in flight (closed loop);
 *   - latency at fixed offered rates (open loop: a checkout starts on schedule whether or not the
 *     earlier ones answered, and its latency counts from its scheduled start, so a slow system
 *     cannot hide its queue) — first replica count only;
 *   - read path: `GET /api/products?page=1&pageSize=20` with autocannon, 50 connections — first only;
 *   - browsing while buying: BENCH_BROWSE_RATE (300) list reads a second spread over 200 different
 *     lists while BENCH_BROWSE_CHECKOUTS (5) checkouts a second run — how many reads reach the
 *     catalog, and how often stock changes drop the cache — first only, with the read path;
 *   - each process's CPU share (from /proc/<pid>/stat) during saturation, the servers' too;
 *   - after the load: RabbitMQ queue depths of this run (must drain to zero), the processes'
 *     memory before and after, and how long one request takes then.
 * A checkout is the full one: a cart, a delivery address, the shop's shipping method, a promo
 * code and a card; "completed" means the saga confirmed the order before the answer.
 *
 *   - one checkout alone: BENCH_ALONE (20) checkouts placed one after another, with their hops;
 * Settings (env): BENCH_DURATION_S (10) per phase · BENCH_RATES (25,50,100,200) offered
 * checkouts/s · BENCH_IN_FLIGHT (64) · BENCH_CHECKOUT_REPLICAS (2; e.g. 1,2,4 for the scale-out
 * table) · BENCH_INVENTORY_REPLICAS (2) · BENCH_SATURATION_MAX (cap on the checkouts prepared
 * for the saturation phase, 300 × duration) · BENCH_READ_CONNECTIONS (50) · BENCH_SKIP_READ=1 ·
 * BENCH_CPU_PROF=<dir>: every service process runs with `node --cpu-prof` and writes
 * <dir>/<service>-<n>-r<replicas>.cpuprofile when it stops (whole run, preparation included; read
 * them with `npx tsx bench/cpuprofile-top.ts <dir>/*.cpuprofile`).
 * Results: printed, and written as JSON to bench/results/<date>-<commit>.json.
 * It creates the test database if the server has none, and removes everything it made.
 */
import "../test/support/env";
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import Redis from "ioredis";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../bin/broker";
import { CLK_TCK, pidsOf, redisCommandsProcessed, ticksSince, tickSnapshot } from "./processes";
import { eventually } from "../test/support/cluster";
import { cleanup, ensureDatabase } from "../test/support/hooks";
import { expectStatus, Http } from "../test/support/http";
import { ServiceProcess, spawnServices } from "../test/support/processes";
import { adminLogin, ADDRESS, CARDS, productInStock, verifiedCustomer } from "../test/support/shop";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require("autocannon") as (opts: Record<string, unknown>) => Promise<any>;

const list = (v: string | undefined, fallback: number[]) => (v ? v.split(",").map(Number).filter(n => n > 0) : fallback);
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const RATES = list(process.env.BENCH_RATES, [25, 50, 100, 200]);
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 64);
const REPLICAS = list(process.env.BENCH_CHECKOUT_REPLICAS, [2]);
const INVENTORY_REPLICAS = Number(process.env.BENCH_INVENTORY_REPLICAS ?? 2);
const SATURATION_MAX = Number(process.env.BENCH_SATURATION_MAX ?? 300 * DURATION_S);
const READ_CONNECTIONS = Number(process.env.BENCH_READ_CONNECTIONS ?? 50);
const BROWSE_RATE = Number(process.env.BENCH_BROWSE_RATE ?? 300);
const BROWSE_CHECKOUTS = Number(process.env.BENCH_BROWSE_CHECKOUTS ?? 5);
/** Checkouts placed one after another on the idle system (the "one checkout alone" latency). */
const ALONE = Number(process.env.BENCH_ALONE ?? 20);
const PREPARE_IN_PARALLEL = Number(process.env.BENCH_PREPARE_PARALLEL ?? 16);
const PRODUCTS = 20; // stock spread over several rows, as a real catalog would be
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF;
/** Node flags for a service process: a CPU profile per process when BENCH_CPU_PROF names a directory. */
function cpuProfArgs(name: string): string[] {
	if (!CPU_PROF_DIR) return [];
	mkdirSync(CPU_PROF_DIR, { recursive: true });
	return ["--cpu-prof", `--cpu-prof-dir=${path.resolve(CPU_PROF_DIR)}`, `--cpu-prof-name=${name.replace(/[^\w.+-]/g, "_")}.cpuprofile`];
}
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
	if (!sorted.length) return NaN;
	return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const latencySummary = (ms: number[]) => {
	const s = [...ms].sort((a, b) => a - b);
	return { p50: round(percentile(s, 50)), p95: round(percentile(s, 95)), p99: round(percentile(s, 99)), max: round(s[s.length - 1] ?? NaN) };
};
const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

// --- Processes, CPU, memory --------------------------------------------------------------------

function rssMiB(pid: number): number | null {
	try {
		const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
		return m ? round(Number(m[1]) / 1024) : null;
	} catch {
		return null;
	}
}
interface Watched {
	name: string;
	pids: () => number[];
}

/** CPU used by each watched process (summed over its pids) while `work` runs, as % of one core. */
async function cpuShare<T>(watched: Watched[], work: () => Promise<T>): Promise<{ result: T; cpu: Record<string, number> }> {
	const before = watched.map(w => tickSnapshot(w.pids()));
	const t0 = performance.now();
	const result = await work();
	const seconds = (performance.now() - t0) / 1000;
	const cpu: Record<string, number> = {};
	watched.forEach((w, i) => (cpu[w.name] = round((ticksSince(before[i]!, w.pids()) / CLK_TCK / seconds) * 100)));
	return { result, cpu };
}

// --- RabbitMQ ----------------------------------------------------------------------------------

/**
 * Messages waiting in this run's queues (their names carry the namespace): from the management
 * API, or from `rabbitmqctl list_queues` where the management plugin does not listen.
 */
async function queueDepth(): Promise<{ messages: number; queues: number } | null> {
	const ns = process.env.NAMESPACE!;
	const count = (queues: Array<{ name: string; messages: number }>) => {
		const ours = queues.filter(q => q.name.includes(ns));
		return { messages: ours.reduce((a, q) => a + q.messages, 0), queues: ours.length };
	};
	const res = await fetch("http://127.0.0.1:15672/api/queues?columns=name,messages", { headers: { authorization: "Basic " + Buffer.from("guest:guest").toString("base64") } }).catch(() => null);
	if (res?.ok) return count(((await res.json()) as Array<{ name: string; messages?: number }>).map(q => ({ name: q.name, messages: q.messages ?? 0 })));
	try {
		const out = execFileSync("rabbitmqctl", ["-q", "list_queues", "name", "messages"], { encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "ignore"] });
		return count(out.split("\n").map(l => l.trim().split(/\s+/)).filter(f => f.length === 2 && /^\d+$/.test(f[1]!)).map(([name, n]) => ({ name: name!, messages: Number(n) })));
	} catch {
		return null;
	}
}

// --- The shop ----------------------------------------------------------------------------------

interface Shop {
	http: Http;
	admin: string;
	products: Array<{ id: string }>;
	methodId: string;
	code: string;
}

async function openShop(http: Http): Promise<Shop> {
	const admin = await adminLogin(http);
	const products = [];
	for (let i = 0; i < PRODUCTS; i++) products.push(await productInStock(http, admin, { stock: 1_000_000, price: 10000 }));
	const method = expectStatus(
		await http.post("/api/admin/shipping-methods", {
			name: `Bench van ${randomUUID().slice(0, 6)}`, carrier: "Shop van", price: { amount: 1500, currency: "PLN" },
			countries: ["PL"], deliveryDays: { min: 1, max: 6 }, expressFee: { amount: 2000, currency: "PLN" }
		}, admin),
		201
	);
	const code = `BENCH${randomUUID().slice(0, 6).toUpperCase()}`;
	expectStatus(await http.post("/api/admin/promotions", { name: `Bench ${code}`, code, kind: "percentage", value: 10 }, admin), 201);
	return { http, admin, products, methodId: method.id, code };
}

/** A verified customer whose checkout is ready to place: a cart, an address, shipping, a promo code, a card. */
async function readyShopper(shop: Shop, n: number): Promise<{ token: string }> {
	const { http } = shop;
	const c = await verifiedCustomer(http, shop.admin);
	expectStatus(await http.post("/api/cart/items", { productId: shop.products[n % shop.products.length]!.id, quantity: 1 }, c.token), 200);
	expectStatus(await http.put("/api/checkout/address", { address: ADDRESS }, c.token), 200);
	expectStatus(await http.put("/api/checkout/shipping-method", { methodId: shop.methodId }, c.token), 200);
	expectStatus(await http.post("/api/checkout/promo-code", { code: shop.code }, c.token), 200);
	expectStatus(await http.put("/api/checkout/payment-method", { method: "card" }, c.token), 200);
	return { token: c.token };
}

async function readyShoppers(shop: Shop, count: number): Promise<Array<{ token: string }>> {
	const out: Array<{ token: string }> = [];
	let next = 0;
	await Promise.all(
		Array.from({ length: PREPARE_IN_PARALLEL }, async () => {
			while (next < count) {
				const n = next++;
				// A busy machine may time a preparing request out: that shopper is started over.
				for (let attempt = 1; ; attempt++) {
					try {
						out.push(await readyShopper(shop, n));
						break;
					} catch (err) {
						if (attempt >= 5) throw err;
						await sleep(1000);
					}
				}
			}
		})
	);
	return out;
}

/** Why checkouts did not complete: "<HTTP status> <status or error type>" → count. */
const failures: Record<string, number> = {};

/**
 * Places one checkout and follows it to its end; true when the order was confirmed. An answer
 * of 202 `pending` (the saga outlived CHECKOUT_WAIT_MS, 12 s here) is followed by reading the
 * order every 250 ms until it is confirmed or failed, so the latency is always place → confirmed.
 * (Reading it every 50 ms, as the bench first did, made a saturated system slower still: 64
 * shoppers polling were up to 1,280 order reads a second, more work than the checkouts.)
 */
/** Checkouts of the saturation phase as the client saw them (epoch ms), for the per-hop breakdown. */
const placed: Array<{ sagaId: string; sentAt: number; answeredAt: number }> = [];
let recording = false;

async function place(http: Http, token: string): Promise<boolean> {
	const sentAt = Date.now();
	const res = await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, token).catch((err: Error) => ({ status: 0, body: { type: err.message } }));
	if (recording && res.status === 202 && res.body?.checkout?.sagaId) placed.push({ sagaId: res.body.checkout.sagaId, sentAt, answeredAt: Date.now() });
	if (res.status === 202 && res.body?.status === "confirmed") return true;
	if (res.status === 202 && res.body?.status === "pending" && res.body.orderId) {
		const until = performance.now() + 60_000;
		while (performance.now() < until) {
			await sleep(250);
			const o = await http.get(`/api/orders/${res.body.orderId}`, token).catch(() => null);
			if (o?.body?.status === "confirmed") return true;
			if (o?.status === 200 && o.body?.status !== "pending") {
				const why = `order ${o.body?.status}`;
				failures[why] = (failures[why] ?? 0) + 1;
				return false;
			}
		}
	}
	const why = `${res.status} ${res.body?.status ?? res.body?.type ?? ""}`;
	failures[why] = (failures[why] ?? 0) + 1;
	return false;
}

/**
 * Where one checkout's wall time goes, from the saga's own history (a timestamp per transition,
 * written by the checkout replica) and the client's clock (same machine): "request → saga
 * created" is the gateway, authentication and the checks before the saga (customer, cart,
 * shipping, promotion, card token); each "sent X → X done" is one step's call and its commit;
 * "X done → sent Y" the engine's own work between steps (Redis writes); "completed → answered"
 * the answer's way back. Mean and p50/p95 over `sample` checkouts of the saturation phase.
 */
async function hopBreakdown(http: Http, admin: string, sample = 40, every = 3) {
	const picked = every > 0 ? placed.slice(Math.floor(placed.length / 4)).filter((_, i) => i % every === 0).slice(0, sample) : placed.slice(0, sample);
	const hops = new Map<string, number[]>();
	const add = (k: string, ms: number) => (hops.get(k) ?? hops.set(k, []).get(k)!).push(ms);
	for (const p of picked) {
		const rec = (await http.get(`/api/admin/sagas/${p.sagaId}`, admin).catch(() => null))?.body;
		const history: Array<{ at: string; event: string }> = rec?.history ?? [];
		if (!history.length) continue;
		let prev = { at: p.sentAt, event: "request sent" };
		for (const h of history) {
			const at = Date.parse(h.at);
			add(`${prev.event} → ${h.event}`, at - prev.at);
			prev = { at, event: h.event };
		}
		add(`${prev.event} → answer received`, p.answeredAt - prev.at);
		add("TOTAL request → answer", p.answeredAt - p.sentAt);
	}
	const out: Record<string, { n: number; mean: number; p50: number; p95: number }> = {};
	for (const [k, v] of hops) {
		const s = [...v].sort((a, b) => a - b);
		out[k] = { n: v.length, mean: round(v.reduce((a, b) => a + b, 0) / v.length), p50: percentile(s, 50), p95: percentile(s, 95) };
	}
	return out;
}

/**
 * Every action call's time as Moleculer's metrics keep it on each node (`moleculer.request.time`,
 * count and sum per action): `local` on the node that ran the handler, `remote` on the caller,
 * from its send to the answer received (the handler plus both trips through RabbitMQ, with their
 * serialization and queueing). Keyed `<action> <local|remote> <caller node>`.
 */
type CallTimes = Map<string, { count: number; sum: number }>;
async function callTimes(client: ServiceBroker): Promise<CallTimes> {
	const out: CallTimes = new Map();
	const nodes = ((client.registry as any).nodes.list({ onlyAvailable: true, withServices: false }) as Array<{ id: string; local: boolean }>).filter(n => !n.local);
	for (const node of nodes) {
		const metrics = (await client
			.call("$node.metrics", {}, { nodeID: node.id })
			.catch(() => [])) as Array<{ name: string; values: Array<{ labels: Record<string, string>; count: number; sum: number }> }>;
		for (const m of metrics.filter(m => m.name === "moleculer.request.time"))
			for (const v of m.values) {
				const where = v.labels.type === "local" ? "local" : `remote ${node.id.slice(`${process.env.TEST_RUN_ID}-`.length).replace(/-[a-z0-9]+$/, "")}`;
				const key = `${v.labels.action} ${where}`;
				const acc = out.get(key) ?? { count: 0, sum: 0 };
				acc.count += v.count;
				acc.sum += v.sum;
				out.set(key, acc);
			}
	}
	return out;
}

/**
 * What each call a checkout makes cost while checkouts ran one at a time: the handler's time on
 * its node and the caller's time for the same call (mean ms over the calls made between the two
 * readings); the difference is the message's two trips, each way through RabbitMQ.
 */
function callBreakdown(before: CallTimes, after: CallTimes) {
	const mean = (key: string) => {
		const a = after.get(key);
		const b = before.get(key) ?? { count: 0, sum: 0 };
		if (!a || a.count === b.count) return null;
		return { n: a.count - b.count, ms: round((a.sum - b.sum) / (a.count - b.count), 2) };
	};
	const rows: Array<{ action: string; caller: string; n: number; handlerMs: number | null; callMs: number; tripsMs: number | null }> = [];
	for (const key of after.keys()) {
		const m = /^(\S+) remote (.+)$/.exec(key);
		if (!m || m[1].startsWith("$")) continue;
		const call = mean(key);
		if (!call) continue;
		const handler = mean(`${m[1]} local`);
		rows.push({ action: m[1], caller: m[2], n: call.n, handlerMs: handler?.ms ?? null, callMs: call.ms, tripsMs: handler ? round(call.ms - handler.ms, 2) : null });
	}
	return rows.sort((a, b) => a.caller.localeCompare(b.caller) || b.callMs - a.callMs);
}

/**
 * Work done on the servers so far: messages published to / delivered by RabbitMQ (its management
 * API, the whole broker), transactions committed in the bench's database (pg_stat_database), and
 * the same split by where it happens — messages published to each of this run's exchanges and
 * delivered from each of its queues, rows written to each of its tables (pg_stat_user_tables).
 * Both servers sample (RabbitMQ every 5 s): read them a few seconds after the load.
 */
interface Work {
	published: number | null;
	delivered: number | null;
	commits: number | null;
	/** Commands the Redis server processed (INFO stats: every user of the server). */
	redisCommands: number | null;
	byExchange: Record<string, number>;
	byQueue: Record<string, number>;
	byTable: Record<string, number>;
}
async function workCounters(): Promise<Work> {
	const ns = process.env.NAMESPACE!;
	const auth = { headers: { authorization: "Basic " + Buffer.from("guest:guest").toString("base64") } };
	const get = async (p: string) => {
		const res = await fetch(`http://127.0.0.1:15672/api/${p}`, auth).catch(() => null);
		return res?.ok ? ((await res.json()) as any) : null;
	};
	const work: Work = { published: null, delivered: null, commits: null, redisCommands: null, byExchange: {}, byQueue: {}, byTable: {} };
	const redis = new Redis(process.env.REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 1 });
	try {
		await redis.connect();
		work.redisCommands = await redisCommandsProcessed(redis);
	} catch {
		// unavailable (a Redis Cluster run): stays null
	} finally {
		redis.disconnect();
	}
	const overview = await get("overview");
	if (overview) {
		work.published = overview.message_stats?.publish ?? null;
		work.delivered = overview.message_stats?.deliver_get ?? null;
	}
	// Names without the run's namespace, so runs compare: "MOL-<ns>.REQB.orders.create" → "MOL.REQB.orders.create".
	const short = (name: string) => name.replace(`-${ns}`, "").replace(`${ns}.`, "").replace(new RegExp(`${ns}-([^.]*)-[a-z0-9]+`), "<$1>");
	for (const x of (await get("exchanges?columns=name,message_stats")) ?? []) {
		if (x.name.includes(ns)) work.byExchange[short(x.name)] = (work.byExchange[short(x.name)] ?? 0) + (x.message_stats?.publish_in ?? 0);
	}
	for (const q of (await get("queues?columns=name,message_stats")) ?? []) {
		if (q.name.includes(ns)) work.byQueue[short(q.name)] = (work.byQueue[short(q.name)] ?? 0) + (q.message_stats?.deliver_get ?? 0);
	}
	const { default: knexFactory } = await import("knex");
	const db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
	try {
		const row = (await db.raw("SELECT xact_commit::bigint AS n FROM pg_stat_database WHERE datname = current_database()")).rows[0];
		work.commits = row ? Number(row.n) : null;
		const prefix = process.env.SCHEMA_PREFIX!;
		const tables = await db.raw("SELECT schemaname, relname, (n_tup_ins + n_tup_upd + n_tup_del)::bigint AS n FROM pg_stat_user_tables WHERE schemaname LIKE ?", [`${prefix}%`]);
		for (const t of tables.rows) work.byTable[`${t.schemaname.slice(prefix.length)}.${t.relname}`] = Number(t.n);
	} catch {
		// counters unavailable: the totals stay null
	} finally {
		await db.destroy();
	}
	return work;
}

/**
 * The statements of the bench's database, when it has pg_stat_statements (a server started with
 * `shared_preload_libraries=pg_stat_statements`, e.g. a private one: see bench/RESULTS.md): reset
 * when the saturation phase starts, read when it ends — calls per completed checkout, by statement.
 */
async function statements(action: "reset" | "read", completed = 1): Promise<Array<{ perCheckout: number; msPerCall: number; query: string }> | null> {
	const { default: knexFactory } = await import("knex");
	const db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
	try {
		await db.raw("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
		if (action === "reset") {
			await db.raw("SELECT pg_stat_statements_reset()");
			return [];
		}
		const rows = (await db.raw("SELECT calls::bigint AS calls, total_exec_time AS ms, query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY calls DESC")).rows;
		const prefix = process.env.SCHEMA_PREFIX!;
		return rows.map((r: any) => ({
			perCheckout: round(Number(r.calls) / Math.max(1, completed), 2),
			msPerCall: round(Number(r.ms) / Math.max(1, Number(r.calls)), 3),
			query: String(r.query).replaceAll(prefix, "").replace(/\s+/g, " ").slice(0, 160)
		}));
	} catch {
		return null; // no pg_stat_statements on this server
	} finally {
		await db.destroy();
	}
}

/** `after − before` per key, per completed checkout, largest first, keys under 0.05 left out. */
function perCheckout(before: Record<string, number>, after: Record<string, number>, completed: number): Record<string, number> {
	const out = Object.entries(after)
		.map(([k, v]) => [k, round((v - (before[k] ?? 0)) / Math.max(1, completed), 2)] as const)
		.filter(([, v]) => v >= 0.05)
		.sort((a, b) => b[1] - a[1]);
	return Object.fromEntries(out);
}

// --- Load --------------------------------------------------------------------------------------

/** Closed loop: IN_FLIGHT checkouts at all times until the duration ends or the shoppers run out. */
async function saturation(http: Http, shoppers: Array<{ token: string }>) {
	// The per-hop breakdown samples this phase's checkouts only (not an earlier configuration's).
	placed.length = 0;
	recording = true;
	const latencies: number[] = [];
	let failed = 0;
	let next = 0;
	const t0 = performance.now();
	const end = t0 + DURATION_S * 1000;
	await Promise.all(
		Array.from({ length: IN_FLIGHT }, async () => {
			while (next < shoppers.length && performance.now() < end) {
				const s = shoppers[next++]!;
				const started = performance.now();
				if (await place(http, s.token)) latencies.push(performance.now() - started);
				else failed++;
			}
		})
	);
	recording = false;
	const seconds = (performance.now() - t0) / 1000;
	return { completed: latencies.length, failed, seconds: round(seconds), perSecond: round(latencies.length / seconds), ranOutOfShoppers: next >= shoppers.length, latencyMs: latencySummary(latencies) };
}

/** Open loop: checkout i starts at i / rate seconds; its latency counts from then. */
async function fixedRate(http: Http, shoppers: Array<{ token: string }>, rate: number) {
	const latencies: number[] = [];
	let failed = 0;
	const t0 = performance.now();
	const runs: Array<Promise<void>> = [];
	for (let i = 0; i < shoppers.length; i++) {
		const due = t0 + (i * 1000) / rate;
		const wait = due - performance.now();
		if (wait > 1) await sleep(wait);
		runs.push(
			place(http, shoppers[i]!.token).then(ok => {
				if (ok) latencies.push(performance.now() - due);
				else failed++;
			})
		);
	}
	await Promise.all(runs);
	const seconds = (performance.now() - t0) / 1000;
	return { offeredPerSecond: rate, offered: shoppers.length, completed: latencies.length, failed, seconds: round(seconds), completedPerSecond: round(latencies.length / seconds), latencyMs: latencySummary(latencies) };
}

/** The watched processes' shares of a core added up, the bench's own client left out. */
function cpuSum(cpu: Record<string, number>, keep: (name: string) => boolean): number {
	return Object.entries(cpu).filter(([k]) => k !== "bench client" && keep(k)).reduce((a, [, v]) => a + v, 0);
}

/** CPU ms per completed checkout over a phase, from each watched process's share of a core: our processes and RabbitMQ, and with Postgres and Redis too. */
function cpuPerCheckout(cpu: Record<string, number>, phase: { seconds: number; completed: number }) {
	const ms = (keep: (name: string) => boolean) => round((cpuSum(cpu, keep) * 10 * phase.seconds) / Math.max(1, phase.completed), 2);
	return { cpuPerCheckoutMs: ms(k => !k.startsWith("postgres") && !k.startsWith("redis")), cpuPerCheckoutMsWithServers: ms(() => true) };
}

async function readPath(baseUrl: string) {
	const r = await autocannon({ url: `${baseUrl}/api/products?page=1&pageSize=20`, connections: READ_CONNECTIONS, duration: DURATION_S });
	return { connections: READ_CONNECTIONS, requestsPerSecond: round(r.requests.average), non2xx: r.non2xx, errors: r.errors, latencyMs: { p50: r.latency.p50, p99: r.latency.p99 } };
}

/**
 * A shop's browsing under its checkouts: list reads at a fixed rate, each of one of 200 different
 * lists drawn at random (pages and page sizes: every one a cache entry of its own), while checkouts
 * run at a fixed rate and change stock. Counts the reads that reached the catalog (Moleculer's
 * request count of catalog.listProducts) and the cache drops (the catalog's `catalog.cacheCleared`
 * broadcasts, which the bench's node hears like a gateway).
 */
async function browsing(client: ServiceBroker, baseUrl: string, http: Http, shoppers: Array<{ token: string }>) {
	const lists = Array.from({ length: 200 }, (_, i) => `/api/products?page=${1 + (i % 2)}&pageSize=${1 + Math.floor(i / 2)}`);
	// Each read a list drawn at random (connections going round the lists in step would read each one at the same moment, once).
	const requests = [{ method: "GET" as const, setupRequest: (req: any) => ({ ...req, path: lists[Math.floor(Math.random() * lists.length)] }) }];
	const catalogCalls = async () => [...(await callTimes(client)).entries()].filter(([k]) => k.startsWith("catalog.listProducts local")).reduce((n, [, v]) => n + v.count, 0);
	const before = await catalogCalls();
	const drops0 = cacheDrops;
	const [reads, buys] = await Promise.all([
		autocannon({ url: baseUrl, requests, connections: 10, overallRate: BROWSE_RATE, duration: DURATION_S }),
		fixedRate(http, shoppers, BROWSE_CHECKOUTS)
	]);
	const reachedCatalog = (await catalogCalls()) - before;
	const drops = cacheDrops - drops0;
	return {
		listReadsPerSecond: round(reads.requests.average), lists: lists.length, non2xx: reads.non2xx, checkoutsPerSecond: buys.completedPerSecond,
		readsThatReachedTheCatalogPercent: round((100 * reachedCatalog) / Math.max(1, reads.requests.total)),
		cacheDropsPerSecond: round(drops / buys.seconds), readLatencyMs: { p50: reads.latency.p50, p99: reads.latency.p99 }
	};
}
/** `catalog.cacheCleared` broadcasts heard so far (the bench's node listens for them like a gateway). */
let cacheDrops = 0;

/**
 * A service process's settings: the production defaults of the saga engine (the test suite's
 * faster recovery passes are for tests), and for the replicated services a smaller connection
 * pool, so 4 checkout replicas and the rest stay within one Postgres server's 100 connections
 * (in production each service has its own database; see docs/scaling.md).
 */
function processEnv(services: string[], port: string): Record<string, string> {
	if (services[0] === "api") return { PORT: port };
	const env: Record<string, string> = { SAGA_RECOVERY_INTERVAL_MS: "1000", SAGA_LEASE_MS: "2000" };
	if (services[0] === "checkout" || services[0] === "inventory") env.DB_POOL_MAX = "5";
	// A place answers when its saga ends, up to 12 s (under the 15 s request timeout): a saturated
	// system's checkouts take seconds, and shoppers polling for them would add load of their own.
	if (services[0] === "checkout") env.CHECKOUT_WAIT_MS = "12000";
	return env;
}

// --- One configuration -------------------------------------------------------------------------

async function runConfiguration(replicas: number, full: boolean) {
	const port = String(35000 + Math.floor(Math.random() * 2000));
	const baseUrl = `http://127.0.0.1:${port}`;
	const http = new Http(baseUrl);
	const groups: string[][] = [
		["api"], ["customers", "notifications"], ["catalog"], ["carts"], ["orders", "payments"], ["shipping", "promotions", "addons"],
		...Array.from({ length: INVENTORY_REPLICAS }, () => ["inventory"]), ...Array.from({ length: replicas }, () => ["checkout"])
	];
	const procs: Array<{ name: string; proc: ServiceProcess }> = [];
	const client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-bench-${replicas}` });
	client.createService({ name: "bench-observer", events: { "catalog.cacheCleared": () => void cacheDrops++ } });
	try {
		const seen = new Map<string, number>();
		for (const g of groups) {
			const base = g.join("+");
			const n = (seen.get(base) ?? 0) + 1;
			seen.set(base, n);
			procs.push({ name: n > 1 || g[0] === "checkout" || g[0] === "inventory" ? `${base}#${n}` : base, proc: spawnServices(g, processEnv(g, port), cpuProfArgs(`${base}-${n}-r${replicas}`)) });
		}
		await client.start();
		const wanted = ["api", "customers", "notifications", "catalog", "inventory", "carts", "orders", "payments", "shipping", "promotions", "checkout"];
		await client.waitForServices(wanted, 120_000).catch(err => {
			// Say what is missing and what each process said, so a start that fails can be understood.
			const seen = new Set((client.registry.getServiceList({ onlyAvailable: true }) as Array<{ name: string }>).map(x => x.name));
			console.error(`Services not seen in 120 s: ${wanted.filter(w => !seen.has(w)).join(", ")}`);
			for (const p of procs) {
				const exited = p.proc.child.exitCode ?? p.proc.child.signalCode;
				console.error(`--- ${p.name}${exited !== null ? ` (exited: ${exited})` : ""}, its last output:\n${p.proc.output.join("").split("\n").slice(-15).join("\n")}`);
			}
			throw err;
		});
		await eventually(async () => (await http.get("/api/products?page=1&pageSize=1").catch(() => null))?.status === 200, 30_000, "gateway");
		const shop = await openShop(http);
		const watched: Watched[] = [
			...procs.map(p => ({ name: p.name, pids: () => (p.proc.child.pid ? [p.proc.child.pid] : []) })),
			{ name: "rabbitmq (beam.smp)", pids: () => pidsOf("beam.smp") },
			{ name: "postgres (all backends, every user of the server)", pids: () => pidsOf("postgres") },
			{ name: "redis-server (all)", pids: () => pidsOf("redis-server") },
			{ name: "bench client", pids: () => [process.pid] }
		];
		const memory = () => Object.fromEntries(procs.map(p => [p.name, p.proc.child.pid ? rssMiB(p.proc.child.pid) : null]));

		const satCount = Math.min(SATURATION_MAX, Math.max(IN_FLIGHT * 4, 300 * DURATION_S));
		console.log(`[${replicas} checkout replica(s)] preparing ${satCount} ready checkouts for the saturation phase…`);
		const satShoppers = await readyShoppers(shop, satCount);
		// A few checkouts first, so every process has its connections and JIT warm.
		for (const s of await readyShoppers(shop, 8)) await place(http, s.token);
		const memoryBefore = memory();
		// What the system costs doing nothing: every process's own timers (heartbeats, recovery
		// passes, pollers), RabbitMQ's and Postgres's. Each replica added brings its share of it.
		await sleep(2000);
		const idle = (await cpuShare(watched, () => sleep(5000))).cpu;
		const idleOurs = round(cpuSum(idle, k => !k.startsWith("postgres") && !k.startsWith("redis") && !k.startsWith("rabbitmq")));
		console.log(`[${replicas}] idle for 5 s: our processes ${idleOurs} % of a core together; ${Object.entries(idle).map(([k, v]) => `${k.split(" ")[0]} ${v}`).join(", ")}`);

		console.log(`[${replicas}] saturation: ${IN_FLIGHT} in flight for ${DURATION_S} s…`);
		await sleep(6000); // the servers' counters catch up with the preparation
		const workBefore = await workCounters();
		const counting = await statements("reset");
		const satFromUs = Number(process.hrtime.bigint() / 1000n);
		const sat = await cpuShare(watched, () => saturation(http, satShoppers));
		const satToUs = Number(process.hrtime.bigint() / 1000n);
		// The same monotonic clock V8 stamps its profiles with: `cpuprofile-top --window` keeps this phase only.
		if (CPU_PROF_DIR) writeFileSync(path.join(CPU_PROF_DIR, `saturation-r${replicas}.window`), `${satFromUs} ${satToUs}\n`);
		console.log(`  ${sat.result.perSecond} completed checkouts/s (${sat.result.completed} completed, ${sat.result.failed} not confirmed${sat.result.ranOutOfShoppers ? ", ran out of prepared checkouts: raise BENCH_SATURATION_MAX" : ""}), latency p50/p95/p99 ${sat.result.latencyMs.p50}/${sat.result.latencyMs.p95}/${sat.result.latencyMs.p99} ms`);
		const hops = await hopBreakdown(http, shop.admin);
		console.log("  one checkout's wall time by hop (ms, mean / p50 / p95 over a sample of the saturation phase):");
		for (const [k, v] of Object.entries(hops)) console.log(`    ${String(v.mean).padStart(8)} ${String(v.p50).padStart(6)} ${String(v.p95).padStart(6)}  ${k} (n=${v.n})`);
		await sleep(6000);
		const workAfter = await workCounters();
		const per = (k: "published" | "delivered" | "commits" | "redisCommands") =>
			workBefore[k] === null || workAfter[k] === null ? null : round((workAfter[k]! - workBefore[k]!) / Math.max(1, sat.result.completed));
		const done = sat.result.completed;
		const work = {
			rabbitmqPublishedPerCheckout: per("published"),
			rabbitmqDeliveredPerCheckout: per("delivered"),
			postgresCommitsPerCheckout: per("commits"),
			redisCommandsPerCheckout: per("redisCommands"),
			publishedByExchange: perCheckout(workBefore.byExchange, workAfter.byExchange, done),
			deliveredByQueue: perCheckout(workBefore.byQueue, workAfter.byQueue, done),
			rowsWrittenByTable: perCheckout(workBefore.byTable, workAfter.byTable, done),
			statements: null as Awaited<ReturnType<typeof statements>>
		};
		console.log(`  work per completed checkout (servers' counters over the phase): RabbitMQ ${work.rabbitmqPublishedPerCheckout ?? "?"} messages published, ${work.rabbitmqDeliveredPerCheckout ?? "?"} delivered; Postgres ${work.postgresCommitsPerCheckout ?? "?"} transactions committed; Redis ${work.redisCommandsPerCheckout ?? "?"} commands`);
		const byStatement = counting ? await statements("read", done) : null;
		work.statements = byStatement;
		if (byStatement) {
			const total = byStatement.reduce((a, r) => a + r.perCheckout, 0);
			console.log(`  Postgres statements per completed checkout (pg_stat_statements): ${round(total)}; the 40 most frequent:`);
			for (const r of byStatement.slice(0, 40)) console.log(`    ${String(r.perCheckout).padStart(6)}  ${String(r.msPerCall).padStart(7)} ms  ${r.query}`);
		}
		const show = (title: string, m: Record<string, number>) => console.log(`    ${title}: ${Object.entries(m).map(([k, v]) => `${k} ${v}`).join(", ") || "?"}`);
		show("published, by exchange", work.publishedByExchange);
		show("delivered, by queue", work.deliveredByQueue);
		show("rows written (inserted + updated + deleted), by table", work.rowsWrittenByTable);
		const { cpuPerCheckoutMs, cpuPerCheckoutMsWithServers } = cpuPerCheckout(sat.cpu, sat.result);

		const rates: unknown[] = [];
		let read: unknown = null;
		let alone: unknown = null;
		if (full) {
			// One checkout at a time on an idle system: the latency a single shopper sees, and where it goes.
			const singles = await readyShoppers(shop, ALONE);
			await sleep(2000);
			const latencies: number[] = [];
			placed.length = 0;
			recording = true;
			const callsBefore = await callTimes(client);
			for (const s of singles) {
				const t0 = performance.now();
				if (await place(http, s.token)) latencies.push(performance.now() - t0);
			}
			recording = false;
			const calls = callBreakdown(callsBefore, await callTimes(client));
			const aloneHops = await hopBreakdown(http, shop.admin, ALONE, 0);
			alone = { checkouts: ALONE, completed: latencies.length, latencyMs: latencySummary(latencies), hops: aloneHops, calls };
			console.log(`  one checkout alone (${ALONE} in a row): place → confirmed p50/p95 ${latencySummary(latencies).p50}/${latencySummary(latencies).p95} ms; by hop (mean / p50 / p95):`);
			for (const [k, v] of Object.entries(aloneHops)) console.log(`    ${String(v.mean).padStart(8)} ${String(v.p50).padStart(6)} ${String(v.p95).padStart(6)}  ${k} (n=${v.n})`);
			console.log("  the same checkouts' calls (mean ms: the call as its caller saw it = the handler on its node + the two trips through RabbitMQ):");
			for (const c of calls) console.log(`    ${String(c.callMs).padStart(7)} = ${String(c.handlerMs ?? "?").padStart(6)} + ${String(c.tripsMs ?? "?").padStart(6)}  ${c.action} from ${c.caller} (n=${c.n})`);
			for (const rate of RATES) {
				const shoppers = await readyShoppers(shop, Math.max(1, Math.round(rate * DURATION_S)));
				await sleep(500);
				// CPU per checkout below saturation too: there the replicas compare without the batching a
				// full queue gives each wake-up (idle work of every process is counted in, as it is spent).
				const { result: r, cpu } = await cpuShare(watched, () => fixedRate(http, shoppers, rate));
				const perCheckout = cpuPerCheckout(cpu, r);
				console.log(`  offered ${rate}/s: ${r.completed}/${r.offered} completed, latency p50/p95/p99 ${r.latencyMs.p50}/${r.latencyMs.p95}/${r.latencyMs.p99} ms; ≈ ${perCheckout.cpuPerCheckoutMs} ms of CPU per checkout (ours + RabbitMQ), ${perCheckout.cpuPerCheckoutMsWithServers} ms with Postgres and Redis`);
				rates.push({ ...r, cpuPercentOfOneCore: cpu, ...perCheckout });
			}
			if (!process.env.BENCH_SKIP_READ) {
				const rp = await readPath(baseUrl);
				console.log(`  GET /api/products?page=1&pageSize=20, ${READ_CONNECTIONS} connections: ${rp.requestsPerSecond} req/s, p50/p99 ${rp.latencyMs.p50}/${rp.latencyMs.p99} ms (${rp.non2xx} non-2xx, ${rp.errors} errors)`);
				const b = await browsing(client, baseUrl, http, await readyShoppers(shop, Math.max(1, Math.round(BROWSE_CHECKOUTS * DURATION_S))));
				console.log(`  browsing while buying: ${b.listReadsPerSecond} list reads/s over ${b.lists} lists (p50/p99 ${b.readLatencyMs.p50}/${b.readLatencyMs.p99} ms, ${b.non2xx} non-2xx) with ${b.checkoutsPerSecond} checkouts/s: ${b.readsThatReachedTheCatalogPercent} % of the reads reached the catalog; the cache was dropped ${b.cacheDropsPerSecond} times a second`);
				read = { ...rp, browsing: b };
			}
		}

		// After the load: the queues drain, memory settles, one request answers at once.
		const drainStart = performance.now();
		let depth = await queueDepth();
		while (depth && depth.messages > 0 && performance.now() - drainStart < 30_000) {
			await sleep(250);
			depth = await queueDepth();
		}
		const drainedInMs = round(performance.now() - drainStart, 0);
		await sleep(2000);
		const probe0 = performance.now();
		const probe = await http.get("/api/products?page=1&pageSize=20");
		const probeMs = round(performance.now() - probe0);
		const after = { queuedMessages: depth?.messages ?? null, queues: depth?.queues ?? null, drainedInMs, probeStatus: probe.status, probeMs, memoryBeforeMiB: memoryBefore, memoryAfterMiB: memory() };
		console.log(`  afterwards: ${after.queuedMessages ?? "?"} message(s) left in ${after.queues ?? "?"} queue(s) (drained in ${drainedInMs} ms), one product list in ${probeMs} ms`);
		for (const p of procs) console.log(`    ${p.name.padEnd(28)} CPU ${String(sat.cpu[p.name]).padStart(6)} %   RSS ${memoryBefore[p.name]} → ${after.memoryAfterMiB[p.name]} MiB`);
		for (const w of watched.slice(procs.length)) console.log(`    ${w.name.padEnd(28)} CPU ${String(sat.cpu[w.name]).padStart(6)} %`);
		console.log(`    ≈ ${cpuPerCheckoutMs} ms of CPU per completed checkout (our processes + RabbitMQ); ${cpuPerCheckoutMsWithServers} ms with Postgres and Redis (every user of those servers: noisy on a shared machine) → ceiling on 2 cores ≈ ${round(2000 / cpuPerCheckoutMsWithServers)}/s`);
		return { checkoutReplicas: replicas, inventoryReplicas: INVENTORY_REPLICAS, idleCpuPercentOfOneCore: idle, saturation: { inFlight: IN_FLIGHT, ...sat.result, cpuPercentOfOneCore: sat.cpu, cpuPerCheckoutMs, cpuPerCheckoutMsWithServers, hops, work }, alone, fixedRates: rates, readPath: read, after };
	} finally {
		await client.stop().catch(() => undefined);
		await Promise.all(procs.map(p => p.proc.kill()));
	}
}

async function main() {
	// A fresh machine has no test database until something creates it.
	await ensureDatabase();
	const commit = (() => {
		try {
			return execFileSync("git", ["describe", "--always", "--dirty", "--abbrev=7", "--exclude=*"], { encoding: "utf8" }).trim();
		} catch {
			return "unknown";
		}
	})();
	const started = new Date();
	const configurations = [];
	try {
		for (const [i, replicas] of REPLICAS.entries()) configurations.push(await runConfiguration(replicas, i === 0));
	} finally {
		await cleanup().catch(err => console.warn("cleanup failed:", err.message));
	}
	if (configurations.length > 1) {
		console.log("\nscale-out (saturation, completed checkouts/s):");
		for (const c of configurations) console.log(`  ${c.checkoutReplicas} checkout replica(s), ${c.inventoryReplicas} inventory: ${c.saturation.perSecond}/s`);
	}
	const result = {
		date: started.toISOString(), commit, machine: { cpus: (await import("node:os")).cpus().length, loadAverageAtStart: (await import("node:os")).loadavg() },
		settings: {
			durationS: DURATION_S, rates: RATES, inFlight: IN_FLIGHT, checkoutReplicas: REPLICAS, inventoryReplicas: INVENTORY_REPLICAS, readConnections: READ_CONNECTIONS,
			browse: { readsPerSecond: BROWSE_RATE, checkoutsPerSecond: BROWSE_CHECKOUTS },
			// The bench's and the services' settings the shell set (the services inherit them), so a run
			// compared by a setting says which; the engine's SAGA_* are the bench's own (processEnv).
			environment: Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(BENCH_|CATALOG_|GATEWAY_|DB_POOL|METRICS|OUTBOX_|CART_)/.test(k)))
		},
		configurations,
		notCompleted: failures
	};
	if (Object.keys(failures).length) console.log("\ncheckouts not completed, by answer:", failures);
	const dir = path.join(__dirname, "results");
	mkdirSync(dir, { recursive: true });
	const file = path.join(dir, `${started.toISOString().slice(0, 19).replace(/[:T]/g, "-")}-${commit}.json`);
	writeFileSync(file, JSON.stringify(result, null, 2) + "\n");
	console.log(`\nresults written to ${path.relative(process.cwd(), file)}`);
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
