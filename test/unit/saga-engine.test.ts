/**
 * The saga engine, transition by transition, with a participant made of plain functions
 * (the engine's unit boundary) and both stores: in-process and the real Redis.
 */
import { expect } from "chai";
import Redis from "ioredis";
import { Errors } from "moleculer";
import { compensationState, forwardState, MemorySagaStore, RedisSagaStore, saga, SagaEngine, SagaRecord, SagaStore } from "../../sagas";

interface Data {
	n: number;
	trail?: string[];
	skipB?: boolean;
}

const refusal = (type = "OUT_OF_STOCK") => new Errors.MoleculerClientError("refused", 409, type);
const outage = () => new Errors.MoleculerRetryableError("broker hiccup", 503, "TEMPORARY");

const def = saga<Data>("test-flow")
	.step("createThing", { invoke: "svc.a", params: d => ({ n: d.n }), onReply: (d, r) => ({ ...d, trail: [...(d.trail ?? []), r] }), compensate: "svc.undoA", compensateParams: (d, f) => ({ n: d.n, why: f.message }) })
	.step("reserveStuff", { invoke: "svc.b", params: d => ({ n: d.n }), when: d => !d.skipB, compensate: "svc.undoB" })
	.step("chargeMoney", { invoke: "svc.c", params: d => ({ n: d.n }), retry: { attempts: 3, backoffMs: 5 }, compensate: "svc.undoC" })
	.step("finish", { invoke: "svc.d", params: d => ({ n: d.n }) });

type Behaviour = Record<string, (call: number) => any>;

/** A participant: records each call, answers per action with `behaviour`. */
function participant(behaviour: Behaviour = {}) {
	const calls: Array<{ action: string; params: any; meta: any }> = [];
	const count = new Map<string, number>();
	const invoke = async (action: string, params: any, opts: any) => {
		calls.push({ action, params, meta: opts.meta });
		const n = (count.get(action) ?? 0) + 1;
		count.set(action, n);
		const b = behaviour[action];
		if (!b) return action;
		const out = b(n);
		if (out instanceof Error) throw out;
		return out;
	};
	return { calls, invoke, actions: () => calls.map(c => c.action) };
}

const stores: Array<{ name: string; make: () => Promise<{ store: SagaStore; done: () => Promise<void> }> }> = [
	{ name: "in-process store", make: async () => ({ store: new MemorySagaStore(), done: async () => undefined }) },
	{
		name: "Redis store",
		make: async () => {
			const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
			const prefix = `${process.env.REDIS_PREFIX ?? "unit:"}engine-${Math.random().toString(36).slice(2)}:`;
			return {
				store: new RedisSagaStore(redis, { prefix }),
				done: async () => {
					const keys = await redis.keys(`${prefix}*`);
					if (keys.length) await redis.del(...keys);
					redis.disconnect();
				}
			};
		}
	}
];

describe("saga state names", () => {
	it("are derived from the step names", () => {
		expect(forwardState("reserveStock")).to.equal("reserving_stock");
		expect(forwardState("createOrder")).to.equal("creating_order");
		expect(forwardState("authorizePayment")).to.equal("authorizing_payment");
		expect(forwardState("lockCart")).to.equal("locking_cart");
		expect(forwardState("confirmOrder")).to.equal("confirming_order");
		expect(forwardState("clearCart")).to.equal("clearing_cart");
		expect(compensationState("reserveStock")).to.equal("compensating_reserve_stock");
	});

	it("a definition refuses two steps with one name", () => {
		expect(() => saga("x").step("a", { invoke: "s.a", params: () => ({}) }).step("a", { invoke: "s.b", params: () => ({}) })).to.throw(/already has a step/);
	});
});

for (const { name, make } of stores) {
	describe(`saga engine (${name})`, () => {
		let store: SagaStore;
		let done: () => Promise<void>;
		const finished: SagaRecord[] = [];
		const engines: SagaEngine[] = [];

		function engine(invoke: any, extra: Partial<ConstructorParameters<typeof SagaEngine>[0]> = {}) {
			const e = new SagaEngine({ store, invoke, definitions: [def], owner: `owner-${engines.length}`, leaseMs: 1000, logger: { info() {}, warn() {}, error() {} }, compensationBackoffMs: 5, parkAfterCompensationAttempts: 4, onFinished: async rec => void finished.push(rec), ...extra });
			engines.push(e);
			return e;
		}

		async function runToEnd(e: SagaEngine, data: Data) {
			const rec = await e.start(def.name, data);
			return (await e.waitFor(rec.id, { timeoutMs: 5000 }))!;
		}

		beforeEach(async () => {
			({ store, done } = await make());
			finished.length = 0;
		});
		afterEach(async () => {
			await Promise.all(engines.splice(0).map(e => e.stop()));
			await done();
		});

		it("runs every step in order to completed, passing replies into the data and one key per step", async () => {
			const p = participant({ "svc.a": () => "made" });
			const rec = await runToEnd(engine(p.invoke), { n: 7 });
			expect(rec.status).to.equal("completed");
			expect(rec.state).to.equal("completed");
			expect(p.actions()).to.deep.equal(["svc.a", "svc.b", "svc.c", "svc.d"]);
			expect(p.calls.map(c => c.params.idempotencyKey)).to.deep.equal(["createThing", "reserveStuff", "chargeMoney", "finish"].map(s => `${rec.id}:${s}`));
			expect(p.calls[0]!.meta).to.include({ sagaId: rec.id, step: "createThing" });
			expect(rec.data.trail).to.deep.equal(["made"]);
			expect(rec.history.map(h => h.state)).to.include.members(["creating_thing", "reserving_stuff", "charging_money", "finishing"]);
			await new Promise(r => setTimeout(r, 50));
			expect(finished.map(f => f.id)).to.deep.equal([rec.id]);
			expect((await store.get(rec.id))!.announced).to.equal(true);
			expect(await store.listUnfinished()).to.not.include(rec.id);
		});

		it("skips a step whose condition does not hold", async () => {
			const p = participant();
			const rec = await runToEnd(engine(p.invoke), { n: 1, skipB: true });
			expect(rec.status).to.equal("completed");
			expect(p.actions()).to.deep.equal(["svc.a", "svc.c", "svc.d"]);
		});

		for (const [failing, undone] of [
			["svc.a", ["svc.undoA"]],
			["svc.b", ["svc.undoB", "svc.undoA"]],
			["svc.c", ["svc.undoC", "svc.undoB", "svc.undoA"]],
			["svc.d", ["svc.undoC", "svc.undoB", "svc.undoA"]]
		] as const) {
			it(`a refusal at ${failing} compensates every step that was sent, in reverse, with the reason`, async () => {
				const p = participant({ [failing]: () => refusal() });
				const rec = await runToEnd(engine(p.invoke), { n: 2 });
				expect(rec.status).to.equal("compensated");
				expect(rec.failure).to.include({ type: "OUT_OF_STOCK", code: 409, message: "refused" });
				const compensations = p.actions().filter(a => a.includes("undo"));
				expect(compensations).to.deep.equal(undone);
				const undoA = p.calls.find(c => c.action === "svc.undoA")!;
				expect(undoA.params).to.deep.include({ n: 2, why: "refused", idempotencyKey: `${rec.id}:createThing:compensate` });
				expect(p.actions().filter(a => a === failing)).to.have.length(1);
			});
		}

		it("a temporary failure is retried with backoff and the saga goes on", async () => {
			const p = participant({ "svc.c": n => (n < 3 ? outage() : "ok") });
			const rec = await runToEnd(engine(p.invoke), { n: 3 });
			expect(rec.status).to.equal("completed");
			expect(p.actions().filter(a => a === "svc.c")).to.have.length(3);
			expect(new Set(p.calls.filter(c => c.action === "svc.c").map(c => c.params.idempotencyKey)).size).to.equal(1);
			expect(rec.history.filter(h => h.event === "chargeMoney failed, retry scheduled")).to.have.length(2);
		});

		it("a step that keeps failing past its budget compensates with the last error", async () => {
			const p = participant({ "svc.c": () => outage() });
			const rec = await runToEnd(engine(p.invoke), { n: 4 });
			expect(rec.status).to.equal("compensated");
			expect(rec.failure).to.include({ step: "chargeMoney", message: "broker hiccup" });
			expect(p.actions().filter(a => a === "svc.c")).to.have.length(3);
		});

		it("a compensation that fails for a while is retried until it succeeds", async () => {
			const p = participant({ "svc.c": () => refusal("PAYMENT_DECLINED"), "svc.undoB": n => (n < 3 ? outage() : "ok") });
			const rec = await runToEnd(engine(p.invoke), { n: 5 });
			expect(rec.status).to.equal("compensated");
			expect(p.actions().filter(a => a === "svc.undoB")).to.have.length(3);
			expect(rec.compensatedSteps).to.deep.equal(["chargeMoney", "reserveStuff", "createThing"]);
		});

		it("a compensation that keeps failing parks the saga, and an operator's retry finishes it", async () => {
			let healthy = false;
			const p = participant({ "svc.c": () => refusal("PAYMENT_DECLINED"), "svc.undoB": () => (healthy ? "ok" : outage()) });
			const e = engine(p.invoke);
			const rec = await runToEnd(e, { n: 6 });
			expect(rec.status).to.equal("parked");
			expect(rec.parkedReason).to.match(/svc.undoB failed: broker hiccup/);
			expect(p.actions().filter(a => a === "svc.undoB")).to.have.length(4);
			expect(p.actions()).to.not.include("svc.undoA");
			expect(finished).to.have.length(0);

			healthy = true;
			const resumed = await e.retry(rec.id);
			expect(resumed.status).to.equal("compensated");
			expect(p.actions().filter(a => a === "svc.undoA")).to.have.length(1);
		});

		it("a refused compensation parks the saga at once", async () => {
			const p = participant({ "svc.c": () => refusal("PAYMENT_DECLINED"), "svc.undoB": () => refusal("INVALID_TRANSITION") });
			const rec = await runToEnd(engine(p.invoke), { n: 8 });
			expect(rec.status).to.equal("parked");
			expect(p.actions().filter(a => a === "svc.undoB")).to.have.length(1);
		});

		it("an operator can make a parked or running saga compensate, never a completed one", async () => {
			let healthy = false;
			const p = participant({ "svc.b": () => (healthy ? "ok" : outage()) });
			const e = engine(p.invoke, { retry: { attempts: 1, backoffMs: 1 }, parkAfterCompensationAttempts: 1 });
			const p2 = participant({ "svc.b": () => outage(), "svc.undoA": () => outage() });
			const parked = await runToEnd(engine(p2.invoke, { parkAfterCompensationAttempts: 1, retry: { attempts: 1, backoffMs: 1 } }), { n: 9 });
			expect(parked.status).to.equal("parked");
			healthy = true;
			const compensated = await e.compensate(parked.id);
			expect(compensated.status).to.equal("compensated");
			const done = await runToEnd(e, { n: 10 });
			expect(done.status).to.equal("completed");
			const err = await e.compensate(done.id).catch(x => x);
			expect(err.type).to.equal("INVALID_TRANSITION");
		});

		it("after a crash mid-step, recovery re-sends the step with the same key and finishes", async () => {
			// The replica that crashed: it recorded 'reserveStuff' as started, then died holding no lease.
			const p = participant();
			const crashed = engine(p.invoke);
			const rec = await crashed.start(def.name, { n: 11 });
			await crashed.waitFor(rec.id, { timeoutMs: 2000 });
			const now = new Date().toISOString();
			const midStep: SagaRecord = {
				...rec,
				id: "00000000-0000-4000-8000-000000000011",
				status: "running",
				state: "reserving_stuff",
				step: 1,
				stepStatus: "started",
				attempts: 1,
				completedSteps: ["createThing", "reserveStuff"],
				compensatedSteps: [],
				announced: false,
				version: 5,
				history: [],
				createdAt: now,
				updatedAt: now
			};
			await store.create(midStep);

			const p2 = participant();
			const fresh = engine(p2.invoke);
			expect(await fresh.recover()).to.be.greaterThan(0);
			const end = (await fresh.waitFor(midStep.id, { timeoutMs: 5000 }))!;
			expect(end.status).to.equal("completed");
			const resent = p2.calls.filter(c => c.params.idempotencyKey?.startsWith(midStep.id));
			expect(resent.map(c => c.action)).to.deep.equal(["svc.b", "svc.c", "svc.d"]);
			expect(resent[0]!.params.idempotencyKey).to.equal(`${midStep.id}:reserveStuff`);
		});

		it("a saga whose lease another replica holds is left alone until the lease expires", async () => {
			const p = participant();
			const e = engine(p.invoke, { leaseMs: 300 });
			const now = new Date().toISOString();
			const rec: SagaRecord<Data> = { id: "00000000-0000-4000-8000-000000000012", type: def.name, state: "started", status: "running", step: 0, stepStatus: "pending", data: { n: 12 }, version: 1, attempts: 0, completedSteps: [], compensatedSteps: [], announced: false, history: [], createdAt: now, updatedAt: now };
			await store.create(rec);
			expect(await store.acquireLease(rec.id, "someone-else", 300)).to.equal(true);
			expect(await e.recover()).to.equal(0);
			expect(p.calls).to.have.length(0);
			await new Promise(r => setTimeout(r, 350));
			expect(await e.recover()).to.equal(1);
			expect((await e.waitFor(rec.id, { timeoutMs: 3000 }))!.status).to.equal("completed");
		});

		it("two replicas driving one saga at once send each step once", async () => {
			const p = participant({ "svc.b": async () => new Promise(r => setTimeout(() => r("slow"), 50)) } as any);
			const a = engine(p.invoke);
			const b = engine(p.invoke);
			const rec = await a.start(def.name, { n: 13 });
			await Promise.all([a.run(rec.id), b.run(rec.id), b.recover()]);
			const end = (await a.waitFor(rec.id, { timeoutMs: 3000 }))!;
			expect(end.status).to.equal("completed");
			expect(p.actions()).to.deep.equal(["svc.a", "svc.b", "svc.c", "svc.d"]);
		});

		it("a write with a stale version is refused", async () => {
			const p = participant();
			const rec = await runToEnd(engine(p.invoke), { n: 14 });
			const stale = { ...rec, version: rec.version + 1, state: "tampered" };
			expect(await store.compareAndSet(stale, rec.version - 1)).to.equal(false);
			expect((await store.get(rec.id))!.state).to.equal("completed");
		});

		it("a retry due later than the in-process limit becomes a deadline that another replica fires", async () => {
			let up = false;
			const p = participant({ "svc.c": () => (up ? "ok" : outage()) });
			const slowRetry = saga<Data>("test-flow").step("chargeMoney", { invoke: "svc.c", params: d => ({ n: d.n }), retry: { attempts: 2, backoffMs: 300 } });
			const a = engine(p.invoke, { definitions: [slowRetry], maxInProcessWaitMs: 50 });
			const rec = await a.start("test-flow", { n: 15 });
			await new Promise(r => setTimeout(r, 100));
			expect(await store.dueDeadlines(Date.now(), 10)).to.not.include(rec.id);
			expect(await store.dueDeadlines(Date.now() + 400, 10)).to.include(rec.id);
			up = true;
			const b = engine(p.invoke, { definitions: [slowRetry], maxInProcessWaitMs: 50 });
			await new Promise(r => setTimeout(r, 300));
			await b.recover();
			expect((await b.waitFor(rec.id, { timeoutMs: 3000 }))!.status).to.equal("completed");
		});

		it("an outcome that could not be announced is announced by recovery", async () => {
			let fail = true;
			const p = participant();
			const announced: string[] = [];
			const e = engine(p.invoke, {
				onFinished: async r => {
					if (fail) throw new Error("outbox down");
					announced.push(r.id);
				}
			});
			const rec = await runToEnd(e, { n: 16 });
			expect(rec.status).to.equal("completed");
			expect(await store.listUnfinished()).to.include(rec.id);
			fail = false;
			await e.recover();
			await new Promise(r => setTimeout(r, 100));
			expect(announced).to.deep.equal([rec.id]);
			expect(await store.listUnfinished()).to.not.include(rec.id);
		});

		it("lists sagas newest first, by state", async () => {
			const p = participant({ "svc.b": () => refusal() });
			const e = engine(p.invoke);
			const first = await runToEnd(e, { n: 17 });
			await new Promise(r => setTimeout(r, 5));
			const second = await runToEnd(e, { n: 18 });
			const all = await store.list({ type: def.name });
			expect(all.rows.map(r => r.id).slice(0, 2)).to.deep.equal([second.id, first.id]);
			const compensated = await store.list({ state: "compensated" });
			expect(compensated.total).to.equal(2);
		});
	});
}
