/**
 * The Redis saga store's suite, run against the machine's Redis (saga-store.redis.test.ts) and
 * against a local Redis Cluster (saga-store.cluster.test.ts): its keys, the Lua
 * compare-and-set, leases held by one replica at a time, a dead replica's saga taken over once
 * its lease expires, and deadlines that fire on another replica. Each engine here has a
 * connection of its own, as separate orchestrator processes would.
 */
import { expect } from "chai";
import type { Cluster, Redis } from "ioredis";
import { Errors } from "moleculer";
import { action, event } from "../../contracts/actions";
import { EngineOptions, RedisSagaStore, saga, SagaEngine, SagaExistsError, sagaKeys, SagaRecord, SagaStore } from "../../sagas";

interface Data {
	n: number;
}

const def = saga<Data>("redis-flow")
	.step("createThing", { invoke: action<{ n: number }>("svc.a"), params: d => ({ n: d.n }), compensate: action<{ n: number }>("svc.undoA") })
	.step("reserveStuff", { invoke: action<{ n: number }>("svc.b"), params: d => ({ n: d.n }), compensate: action<{ n: number }>("svc.undoB") })
	.step("finish", { invoke: action<{ n: number }>("svc.c"), params: d => ({ n: d.n }), retry: { attempts: 2, backoffMs: 400 } });

/** A waiting step: send, then wait for paid / declined for the saga's n, at most 1 s. */
const waiting = saga<Data>("redis-wait")
	.step("chargeMoney", {
		invoke: action<{ n: number }>("svc.charge"),
		params: d => ({ n: d.n }),
		compensate: action<{ n: number }>("svc.refund"),
		await: { event: event<{ ok: true }>("test.paid"), failOn: event<{ reason: string }>("test.declined"), key: d => `n-${d.n}`, deadlineMs: 1000 }
	})
	.pivot()
	.step("finish", { invoke: action<{ n: number }>("svc.finish"), params: d => ({ n: d.n }) });

const quiet = { info() {}, warn() {}, error() {} };
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
let seq = 0;
const newId = () => `00000000-0000-4000-8000-${String(++seq).padStart(12, "0")}`;

function record(id: string, fields: Partial<SagaRecord<Data>> = {}): SagaRecord<Data> {
	const now = new Date().toISOString();
	return { id, type: def.name, state: "started", status: "running", step: 0, stepStatus: "pending", data: { n: 1 }, version: 1, attempts: 0, completedSteps: [], compensatedSteps: [], announced: false, history: [], createdAt: now, updatedAt: now, ...fields };
}

/** A participant that records calls and answers per action (an Error is thrown). */
function participant(behaviour: Record<string, (call: number) => unknown> = {}) {
	const calls: Array<{ action: string; params: any }> = [];
	const invoke = async (action: string, params: any) => {
		calls.push({ action, params });
		const b = behaviour[action];
		const out = b ? await b(calls.filter(c => c.action === action).length) : action;
		if (out instanceof Error) throw out;
		return out;
	};
	return { calls, invoke, actions: () => calls.map(c => c.action) };
}

export interface SagaStoreTarget {
	/** A new connection to the Redis (or cluster) under test. */
	connect(): Redis | Cluster;
	/** Every key matching the pattern, on every node. */
	keys(redis: Redis | Cluster, pattern: string): Promise<string[]>;
}

/** Every waits entry over all shards. */
async function allWaits(redis: Redis | Cluster, prefix: string): Promise<Record<string, string>> {
	const k = sagaKeys(prefix);
	const hashes = await Promise.all(Array.from({ length: k.shards }, (_, n) => redis.hgetall(k.waitsOfShard(n))));
	return Object.assign({}, ...hashes);
}

export function sagaStoreSuite(title: string, target: () => SagaStoreTarget) {
	describe(title, function () {
		this.timeout(20_000);
		const runPrefix = `${process.env.REDIS_PREFIX ?? "it:"}saga-store-${Math.random().toString(36).slice(2)}:`;
		const connections: Array<Redis | Cluster> = [];
		const engines: SagaEngine[] = [];
		const dead = new Set<SagaEngine>();
		let redis: Redis | Cluster;
		let store: RedisSagaStore;
		/** Each test has keys of its own, so no test's sagas are recovered by another's engines. */
		let prefix = "";
		let tests = 0;

		/** A replica: its own connection, store and engine. */
		function replica(owner: string, invoke: EngineOptions["invoke"], extra: Partial<EngineOptions> = {}) {
			const conn = target().connect();
			connections.push(conn);
			const engine = new SagaEngine({ store: new RedisSagaStore(conn, { prefix }), invoke, definitions: [def], owner, leaseMs: 300, logger: quiet, ...extra });
			engines.push(engine);
			return { conn, engine };
		}

		before(() => {
			redis = target().connect();
		});
		beforeEach(() => {
			prefix = `${runPrefix}${++tests}:`;
			store = new RedisSagaStore(redis, { prefix });
		});
		afterEach(async () => {
			// A replica whose connection was cut is dead: nothing of it is waited for (on a cluster its last calls may never answer).
			await Promise.all(engines.splice(0).filter(e => !dead.has(e)).map(e => e.stop()));
			dead.clear();
			connections.splice(0).forEach(c => c.disconnect());
		});
		after(async () => {
			for (const key of await target().keys(redis, `${runPrefix}*`)) await redis.del(key);
			expect(await target().keys(redis, `${runPrefix}*`)).to.deep.equal([]);
			redis.disconnect();
		});

		it("keeps a saga as one hash under the prefix, indexed as unfinished until it is finished and its outcome announced", async () => {
			const id = newId();
			const rec = record(id);
			await store.create(rec);
			expect(await redis.hget(sagaKeys(prefix).record(id), "v")).to.equal("1");
			expect(await redis.zscore(sagaKeys(prefix).all(sagaKeys(prefix).shard(id)), id)).to.equal(String(Date.parse(rec.createdAt)));
			expect(await redis.sismember(sagaKeys(prefix).unfinished(sagaKeys(prefix).shard(id)), id)).to.equal(1);
			expect(await store.get(id)).to.deep.equal(rec);

			const again = await store.create({ ...rec, state: "other" }).catch(x => x);
			expect(again).to.be.instanceOf(SagaExistsError);
			expect((await store.get(id))!.state).to.equal("started");

			expect(await store.compareAndSet({ ...rec, status: "completed", state: "completed" }, 1)).to.equal(true);
			expect(await store.listUnfinished()).to.include(id); // finished, not announced yet
			expect(await store.compareAndSet({ ...rec, status: "completed", state: "completed", announced: true }, 2)).to.equal(true);
			expect(await store.listUnfinished()).to.not.include(id);
			expect(await redis.hget(sagaKeys(prefix).record(id), "v")).to.equal("3");
			expect(await store.get(newId())).to.equal(null);
		});

		it("keeps a saga that finished for good for its retention only: then its record expires and it leaves the listing; a parked or running one stays", async () => {
			await retentionHolds(new RedisSagaStore(redis, { prefix, retentionMs: 300 }));
			expect(await target().keys(redis, `${prefix}saga:*`)).to.have.length(2); // the parked and the running record
		});

		it("lets exactly one of many concurrent compare-and-sets on one version through", async () => {
			const id = newId();
			await store.create(record(id));
			const other = new RedisSagaStore(target().connect(), { prefix });
			const writers = Array.from({ length: 20 }, (_, i) => (i % 2 ? store : other).compareAndSet(record(id, { state: `writer-${i}`, version: 99 }), 1));
			const results = await Promise.all(writers);
			expect(results.filter(Boolean)).to.have.length(1);
			const stored = (await store.get(id))!;
			expect(stored.version).to.equal(2); // the store writes expected + 1, whatever the caller put in
			expect(stored.state).to.equal(`writer-${results.indexOf(true)}`);
			expect(await store.compareAndSet(record(id, { state: "late" }), 1)).to.equal(false);
			expect(await store.compareAndSet(record(newId()), 1)).to.equal(false); // no such saga
			(other as any).redis.disconnect();
		});

		it("a compare-and-set that names a lease is refused while another owner holds it, and extends the writer's lease", async () => {
			const id = newId();
			await store.create(record(id));
			const lease = sagaKeys(prefix).lease(id);
			expect(await store.acquireLease(id, "b", 1000)).to.equal(true);
			expect(await store.compareAndSet(record(id, { state: "b holds it" }), 1, { owner: "a", ttlMs: 5000 })).to.equal(false);
			expect((await store.get(id))!.version).to.equal(1);
			expect(await redis.pttl(lease)).to.be.at.most(1000);
			expect(await store.compareAndSet(record(id, { state: "driven by b" }), 1, { owner: "b", ttlMs: 8000 })).to.equal(true);
			expect(await redis.pttl(lease)).to.be.above(7000);
			expect(await store.compareAndSet(record(id, { state: "stale" }), 1, { owner: "b", ttlMs: 8000 })).to.equal(false); // the version still counts
			expect((await store.get(id))!).to.deep.include({ version: 2, state: "driven by b" });
			// b's lease lapses during a slow call and nobody takes it: b's answer is still written, and b holds the lease again.
			await redis.del(lease);
			expect(await store.compareAndSet(record(id, { state: "answered late" }), 2, { owner: "b", ttlMs: 8000 })).to.equal(true);
			expect(await redis.get(lease)).to.equal("b");
			expect(await store.acquireLease(id, "a", 1000)).to.equal(false);
		});

		it("gives a lease to one owner at a time: its owner re-enters and renews it, nobody else renews or releases it", async () => {
			const id = newId();
			const lease = sagaKeys(prefix).lease(id);
			expect(await store.acquireLease(id, "a", 1000)).to.equal(true);
			expect(await redis.get(lease)).to.equal("a");
			expect(await store.acquireLease(id, "b", 1000)).to.equal(false);
			expect(await store.renewLease(id, "b", 5000)).to.equal(false);
			await store.releaseLease(id, "b");
			expect(await redis.get(lease)).to.equal("a");

			expect(await store.acquireLease(id, "a", 3000)).to.equal(true);
			expect(await redis.pttl(lease)).to.be.above(2000);
			expect(await store.renewLease(id, "a", 8000)).to.equal(true);
			expect(await redis.pttl(lease)).to.be.above(7000);

			await store.releaseLease(id, "a");
			expect(await redis.exists(lease)).to.equal(0);
			expect(await store.renewLease(id, "a", 1000)).to.equal(false);
			expect(await store.acquireLease(id, "b", 1000)).to.equal(true);
		});

		it("reads the lease holders of many sagas over every shard at once, in the order asked, null where nobody holds one", async () => {
			const ids = Array.from({ length: 40 }, () => newId());
			const keys = sagaKeys(prefix);
			expect(new Set(ids.map(id => keys.shard(id))).size).to.be.above(5);
			for (const [i, id] of ids.entries()) if (i % 3 !== 2) expect(await store.acquireLease(id, `owner-${i % 3}`, 5000)).to.equal(true);
			const holders = await store.leaseHolders(ids);
			expect(holders).to.deep.equal(ids.map((_, i) => (i % 3 === 2 ? null : `owner-${i % 3}`)));
			for (const [i, id] of ids.entries()) expect(await store.leaseHolder(id)).to.equal(holders[i]);
			expect(await store.leaseHolders([])).to.deep.equal([]);
		});

		it("lets a lease that is not renewed expire, so another owner can take it", async () => {
			const id = newId();
			expect(await store.acquireLease(id, "a", 100)).to.equal(true);
			expect(await store.acquireLease(id, "b", 100)).to.equal(false);
			await sleep(150);
			expect(await store.renewLease(id, "a", 100)).to.equal(false);
			expect(await store.acquireLease(id, "b", 1000)).to.equal(true);
			expect(await store.acquireLease(id, "a", 1000)).to.equal(false);
		});

		it("keeps deadlines in a sorted set: due ones earliest first, at most `limit`, cleared one by one", async () => {
			const [x, y, z] = [newId(), newId(), newId()];
			const now = Date.now();
			await store.scheduleDeadline(x, now - 10);
			await store.scheduleDeadline(y, now - 20);
			await store.scheduleDeadline(z, now + 60_000);
			expect(await store.dueDeadlines(now, 10)).to.deep.equal([y, x]);
			expect(await store.dueDeadlines(now, 1)).to.deep.equal([y]);
			expect(await redis.zscore(sagaKeys(prefix).deadlines(sagaKeys(prefix).shard(z)), z)).to.equal(String(now + 60_000));
			await store.scheduleDeadline(y, now + 60_000); // moved later
			expect(await store.dueDeadlines(now, 10)).to.deep.equal([x]);
			for (const id of [x, y, z]) await store.clearDeadline(id);
			expect(await store.dueDeadlines(now + 120_000, 10)).to.deep.equal([]);
		});

		it("lists sagas newest first, filtered, a page at a time", async () => {
			const s = store;
			const base = Date.parse("2026-01-01T00:00:00Z");
			const ids: string[] = [];
			for (let i = 0; i < 5; i++) {
				const id = newId();
				ids.push(id);
				await s.create(record(id, { createdAt: new Date(base + i * 1000).toISOString(), status: i % 2 ? "completed" : "running", state: i % 2 ? "completed" : "started" }));
			}
			const newest = [...ids].reverse();
			expect(await s.list({})).to.deep.include({ total: 5 });
			expect((await s.list({})).rows.map(r => r.id)).to.deep.equal(newest);
			expect((await s.list({ limit: 2, offset: 1 })).rows.map(r => r.id)).to.deep.equal(newest.slice(1, 3));
			const completed = await s.list({ status: "completed", limit: 1 });
			expect(completed.total).to.equal(2);
			expect(completed.rows.map(r => r.id)).to.deep.equal([ids[3]]);
			expect((await s.list({ state: "started", type: def.name })).rows.map(r => r.id)).to.deep.equal([ids[4], ids[2], ids[0]]);
			expect((await s.list({ type: "another-saga" })).total).to.equal(0);
		});

		it("two engines on two connections: only the lease holder drives the saga and each step is sent once", async () => {
			const p = participant({ "svc.b": () => sleep(100).then(() => "slow") });
			const a = replica("replica-a", p.invoke);
			const b = replica("replica-b", p.invoke);
			const { id } = await a.engine.start(def.name, { n: 1 });
			while (!p.actions().includes("svc.b")) await sleep(5);
			expect(await redis.get(sagaKeys(prefix).lease(id))).to.equal("replica-a");
			const [byB, recovered] = await Promise.all([b.engine.run(id), b.engine.recover()]);
			expect(recovered).to.equal(0);
			expect(byB!.status).to.equal("running");
			const end = (await a.engine.waitFor(id, { timeoutMs: 5000 }))!;
			expect(end.status).to.equal("completed");
			expect(p.actions()).to.deep.equal(["svc.a", "svc.b", "svc.c"]);
			await sleep(50);
			expect(await redis.exists(sagaKeys(prefix).lease(id))).to.equal(0); // released at the end
		});

		it("a call four times slower than the lease keeps the lease renewed: the other replica, looking for orphans all along, never takes the saga", async () => {
			const p = participant({ "svc.b": () => sleep(1200).then(() => "slow") });
			const a = replica("replica-a", p.invoke);
			const b = replica("replica-b", p.invoke);
			const { id } = await a.engine.start(def.name, { n: 1 });
			let tookOver = 0;
			const watching = (async () => {
				while (!p.actions().includes("svc.c")) {
					tookOver += await b.engine.recover();
					await sleep(20);
				}
			})();
			const end = (await a.engine.waitFor(id, { timeoutMs: 8000 }))!;
			await watching;
			expect(end.status).to.equal("completed");
			expect(tookOver).to.equal(0);
			expect(p.actions()).to.deep.equal(["svc.a", "svc.b", "svc.c"]);
		});

		it("a saga whose replica died mid-step is taken over by another once the lease expires, and the step is re-sent with its key", async () => {
			let answerDeadCall!: () => void;
			const dying = participant({ "svc.b": () => new Promise(r => (answerDeadCall = () => r("too late"))) });
			const a = replica("replica-a", dying.invoke);
			const { id } = await a.engine.start(def.name, { n: 2 });
			while (!dying.actions().includes("svc.b")) await sleep(5);
			dead.add(a.engine);
			a.conn.disconnect(); // replica-a dies with reserveStuff in flight: no more renewals, no more writes
			try {
				const survivor = participant();
				const b = replica("replica-b", survivor.invoke);
				expect(await b.engine.recover()).to.equal(0); // the dead replica's lease still runs
				expect(survivor.calls).to.have.length(0);
				await sleep(350);
				expect(await b.engine.recover()).to.equal(1);
				const end = (await b.engine.waitFor(id, { timeoutMs: 5000 }))!;
				expect(end.status).to.equal("completed");
				expect(survivor.actions()).to.deep.equal(["svc.b", "svc.c"]);
				expect(survivor.calls[0]!.params.idempotencyKey).to.equal(`${id}:reserveStuff`);
				expect(end.history.map(h => h.event)).to.include("re-sent reserveStuff");

				await sleep(50); // replica-b announces the outcome
				const settled = (await store.get(id))!;
				expect(settled.announced).to.equal(true);
				answerDeadCall(); // the dead replica's call returns; its write cannot land
				await sleep(50);
				expect(await store.get(id)).to.deep.equal(settled);
			} finally {
				answerDeadCall();
			}
		});

		it("a retry deadline kept in Redis fires on another replica when it is due", async () => {
			let up = false;
			const p = participant({ "svc.c": () => (up ? "ok" : new Errors.MoleculerRetryableError("down", 503)) });
			const a = replica("replica-a", p.invoke, { maxInProcessWaitMs: 50 });
			const { id } = await a.engine.start(def.name, { n: 3 });
			let waiting: SagaRecord | null = null;
			while (!(waiting = await store.get(id))?.nextAttemptAt) await sleep(5);
			await a.engine.stop(); // replica-a goes away; only Redis knows when to try again
			expect(Number(await redis.zscore(sagaKeys(prefix).deadlines(sagaKeys(prefix).shard(id)), id))).to.equal(waiting!.nextAttemptAt);

			const b = replica("replica-b", p.invoke, { maxInProcessWaitMs: 50 });
			expect(await b.engine.recover()).to.equal(0); // not due yet
			expect(p.actions().filter(x => x === "svc.c")).to.have.length(1);
			up = true;
			await sleep(waiting!.nextAttemptAt! - Date.now() + 20);
			expect(await store.dueDeadlines(Date.now(), 10)).to.include(id);
			expect(await b.engine.recover()).to.equal(1);
			const end = (await b.engine.waitFor(id, { timeoutMs: 5000 }))!;
			expect(end.status).to.equal("completed");
			expect(p.actions().filter(x => x === "svc.c")).to.have.length(2);
			expect(await redis.zscore(sagaKeys(prefix).deadlines(sagaKeys(prefix).shard(id)), id)).to.equal(null);
		});

		it("a wait lives in Redis: its event reaches the saga through any replica, its deadline fires on another after the first died", async () => {
			const p = participant();
			const a = replica("replica-a", p.invoke, { definitions: [waiting] });
			const paid = (await a.engine.start(waiting.name, { n: 1 })).id;
			const silent = (await a.engine.start(waiting.name, { n: 2 })).id;
			while ((await store.get(silent))?.stepStatus !== "waiting" || (await store.get(paid))?.stepStatus !== "waiting") await sleep(5);
			expect(await allWaits(redis, prefix)).to.deep.equal({ "test.paid|n-1": paid, "test.declined|n-1": paid, "test.paid|n-2": silent, "test.declined|n-2": silent });
			expect(Number(await redis.zscore(sagaKeys(prefix).deadlines(sagaKeys(prefix).shard(silent)), silent))).to.equal((await store.get(silent))!.wait!.until);
			await a.engine.stop(); // replica-a goes away while both wait

			const b = replica("replica-b", p.invoke, { definitions: [waiting] });
			expect(await b.engine.deliver("test.paid", "n-1", { ok: true })).to.deep.equal({ accepted: true, sagaId: paid });
			expect((await b.engine.waitFor(paid, { timeoutMs: 3000 }))!.status).to.equal("completed");
			const until = (await store.get(silent))!.wait!.until!;
			if (Date.now() < until - 50) expect(await b.engine.recover()).to.equal(0); // not due yet (checked when the machine was quick enough to ask in time)
			await sleep(Math.max(0, until - Date.now() + 50));
			expect(await b.engine.recover()).to.equal(1);
			const end = (await b.engine.waitFor(silent, { timeoutMs: 3000 }))!;
			expect(end.status).to.equal("compensated");
			expect(end.failure).to.include({ type: "DEADLINE_PASSED" });
			expect(p.actions().sort()).to.deep.equal(["svc.charge", "svc.charge", "svc.finish", "svc.refund"]);
			expect(await b.engine.deliver("test.paid", "n-2", { ok: true })).to.deep.equal({ accepted: false, reason: "no saga waits for it" });
			expect(await allWaits(redis, prefix)).to.deep.equal({});
			expect(await redis.zscore(sagaKeys(prefix).deadlines(sagaKeys(prefix).shard(silent)), silent)).to.equal(null);
		});

		it("a replica reported gone has its leases freed at once, so another takes its saga over before the lease expires", async () => {
			let answerDeadCall = () => {};
			const dying = participant({ "svc.b": () => new Promise(r => (answerDeadCall = () => r("too late"))) });
			const a = replica("node-a:1", dying.invoke, { leaseMs: 60_000 });
			const { id } = await a.engine.start(def.name, { n: 4 });
			while (!dying.actions().includes("svc.b")) await sleep(5);
			try {
				const survivor = participant();
				const b = replica("node-b:1", survivor.invoke, { leaseMs: 60_000 });
				expect(await b.engine.recover()).to.equal(0); // node-a's lease holds for a minute
				expect(await b.engine.takeOver("node-a")).to.equal(1);
				expect((await b.engine.waitFor(id, { timeoutMs: 3000 }))!.status).to.equal("completed");
				expect(survivor.actions()).to.deep.equal(["svc.b", "svc.c"]);
			} finally {
				answerDeadCall();
			}
		});
	});
}

/**
 * A store kept `retentionMs` 300: a saga completed and announced expires after it and
 * `forgetExpired` takes it off the listing; a completed one not yet announced, a parked and a
 * running one do not expire.
 */
export async function retentionHolds(store: SagaStore) {
	const done = record(newId());
	const parked = record(newId());
	const running = record(newId());
	for (const r of [done, parked, running]) await store.create(r);
	expect(await store.compareAndSet({ ...done, status: "completed", state: "completed" }, 1)).to.equal(true);
	expect(await store.compareAndSet({ ...parked, status: "parked", parkedReason: "refund failed" }, 1)).to.equal(true);
	await sleep(400);
	expect(await store.get(done.id), "completed, not announced yet: kept").to.not.equal(null);
	expect(await store.compareAndSet({ ...done, status: "completed", state: "completed", announced: true }, 2)).to.equal(true);
	expect((await store.list({ limit: 10 })).total).to.equal(3);
	await sleep(400);
	expect(await store.get(done.id)).to.equal(null);
	expect((await store.get(parked.id))?.status).to.equal("parked");
	expect((await store.get(running.id))?.status).to.equal("running");
	expect(await store.forgetExpired(Date.now())).to.equal(1);
	expect(await store.forgetExpired(Date.now())).to.equal(0);
	const listed = await store.list({ limit: 10 });
	expect(listed.total).to.equal(2);
	expect(listed.rows.map(r => r.id).sort()).to.deep.equal([parked.id, running.id].sort());
}
