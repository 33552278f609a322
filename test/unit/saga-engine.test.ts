/**
 * The saga engine, transition by transition, with a participant made of plain functions
 * (the engine's unit boundary) and both stores: in-process and the real Redis.
 */
import { expect } from "chai";
import Redis from "ioredis";
import { Errors } from "moleculer";
import { action } from "../../contracts/actions";
import { compensationState, EngineOptions, forwardState, MemorySagaStore, RedisSagaStore, saga, SagaEngine, SagaExistsError, SagaRecord, SagaStore } from "../../sagas";
import { retentionHolds } from "../support/saga-store-suite";

interface Data {
	n: number;
	trail?: string[];
	skipB?: boolean;
}

const refusal = (type = "OUT_OF_STOCK") => new Errors.MoleculerClientError("refused", 409, type);
const outage = () => new Errors.MoleculerRetryableError("broker hiccup", 503, "TEMPORARY");
const quiet = { info() {}, warn() {}, error() {} };
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

const Svc = {
	a: action<{ n: number }, string>("svc.a"),
	undoA: action<{ n: number; why: string }>("svc.undoA"),
	b: action<{ n: number }>("svc.b"),
	undoB: action<{ n: number }>("svc.undoB"),
	c: action<{ n: number }>("svc.c"),
	undoC: action<{ n: number }>("svc.undoC"),
	d: action<{ n: number }>("svc.d")
};

const def = saga<Data>("test-flow")
	.step("createThing", { invoke: Svc.a, params: d => ({ n: d.n }), onReply: (d, r) => ({ ...d, trail: [...(d.trail ?? []), r] }), compensate: Svc.undoA, compensateParams: (d, f) => ({ n: d.n, why: f.message }) })
	.step("reserveStuff", { invoke: Svc.b, params: d => ({ n: d.n }), when: d => !d.skipB, compensate: Svc.undoB })
	.step("chargeMoney", { invoke: Svc.c, params: d => ({ n: d.n }), retry: { attempts: 3, backoffMs: 20 }, compensate: Svc.undoC })
	.step("finish", { invoke: Svc.d, params: d => ({ n: d.n }) });

type Behaviour = Record<string, (call: number) => unknown>;

/** A participant: records each call, answers per action with `behaviour` (an Error is thrown). */
function participant(behaviour: Behaviour = {}) {
	const calls: Array<{ action: string; params: any; meta: any; at: number }> = [];
	const count = new Map<string, number>();
	const invoke = async (action: string, params: any, opts: any) => {
		calls.push({ action, params, meta: opts.meta, at: Date.now() });
		const n = (count.get(action) ?? 0) + 1;
		count.set(action, n);
		const b = behaviour[action];
		const out = b ? await b(n) : action;
		if (out instanceof Error) throw out;
		return out;
	};
	return { calls, invoke, actions: () => calls.map(c => c.action), callsOf: (a: string) => calls.filter(c => c.action === a) };
}

/** A record as a replica that died would have left it. */
function leftBehind(id: string, fields: Partial<SagaRecord<Data>>): SagaRecord<Data> {
	const now = new Date().toISOString();
	return { id, type: def.name, state: "started", status: "running", step: 0, stepStatus: "pending", data: { n: 0 }, version: 1, attempts: 0, completedSteps: [], compensatedSteps: [], announced: false, history: [], createdAt: now, updatedAt: now, ...fields };
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

describe("the in-process saga store", () => {
	it("keeps a saga that finished for good for its retention only, as the Redis store does", () => retentionHolds(new MemorySagaStore({ retentionMs: 300 })));
});

describe("saga state names", () => {
	it("are the step's verb as a gerund, then the rest of its name", () => {
		expect(forwardState("reserveStock")).to.equal("reserving_stock");
		expect(forwardState("createOrder")).to.equal("creating_order");
		expect(forwardState("authorizePayment")).to.equal("authorizing_payment");
		expect(forwardState("lockCart")).to.equal("locking_cart");
		expect(forwardState("confirmOrder")).to.equal("confirming_order");
		expect(forwardState("clearCart")).to.equal("clearing_cart");
		expect(forwardState("checkOutCart")).to.equal("checking_out_cart");
		expect(forwardState("issueInvoice")).to.equal("issuing_invoice");
		expect(forwardState("freeSeat")).to.equal("freeing_seat");
		expect(forwardState("finish")).to.equal("finishing");
	});

	it("while undoing a step, are compensating_ and the step's name", () => {
		expect(compensationState("reserveStock")).to.equal("compensating_reserve_stock");
		expect(compensationState("authorizePayment")).to.equal("compensating_authorize_payment");
	});
});

describe("saga definitions", () => {
	const noop = { invoke: action<object>("s.a"), params: () => ({}) };
	it("keep their steps in order and each addition makes a new definition", () => {
		const one = saga("x").step("doThis", noop);
		const two = one.step("doThat", noop);
		expect(one.steps.map(s => s.name)).to.deep.equal(["doThis"]);
		expect(two.steps.map(s => s.name)).to.deep.equal(["doThis", "doThat"]);
		expect(two.stepNamed("doThat")!.invoke.name).to.equal("s.a");
	});

	it("refuse two steps with one name, a name that is not camelCase, and compensation params without a compensation", () => {
		expect(() => saga("x").step("doThis", noop).step("doThis", noop)).to.throw(/already has a step/);
		expect(() => saga("x").step("do_this", noop)).to.throw(/camelCase/);
		expect(() => saga("x").step("doThis", { ...noop, compensateParams: () => ({}) })).to.throw(/without a compensate/);
		expect(() => saga("x").step("doThis", { ...noop, retry: { attempts: 0, backoffMs: 1 } })).to.throw(/attempts/);
	});
});

for (const { name, make } of stores) {
	describe(`saga engine (${name})`, () => {
		let store: SagaStore;
		let done: () => Promise<void>;
		const finished: SagaRecord[] = [];
		const engines: SagaEngine[] = [];

		function engine(invoke: EngineOptions["invoke"], extra: Partial<EngineOptions> = {}) {
			const e = new SagaEngine({
				store,
				invoke,
				definitions: [def],
				owner: `owner-${engines.length}`,
				leaseMs: 1000,
				logger: quiet,
				defaults: { compensationBackoffMs: 5, parkAfterCompensationAttempts: 4 },
				onFinished: async rec => void finished.push(rec),
				...extra
			});
			engines.push(e);
			return e;
		}

		/** Starts a saga and answers its record once it is terminal and its outcome announced (or it is parked). */
		async function runToEnd(e: SagaEngine, data: Data) {
			const { id } = await e.start(def.name, data);
			await e.waitFor(id, { timeoutMs: 5000 });
			return settled(id);
		}

		async function settled(id: string, timeoutMs = 2000) {
			const until = Date.now() + timeoutMs;
			for (;;) {
				const rec = (await store.get(id))!;
				if (rec.announced || rec.status === "parked" || Date.now() > until) return rec;
				await sleep(5);
			}
		}

		beforeEach(async () => {
			({ store, done } = await make());
			finished.length = 0;
		});
		afterEach(async () => {
			await Promise.all(engines.splice(0).map(e => e.stop()));
			await done();
		});

		it("runs every step in order to completed, passing replies into the data, one idempotency key per step", async () => {
			const p = participant({ "svc.a": () => "made" });
			const rec = await runToEnd(engine(p.invoke), { n: 7 });
			expect(rec.status).to.equal("completed");
			expect(rec.state).to.equal("completed");
			expect(p.actions()).to.deep.equal(["svc.a", "svc.b", "svc.c", "svc.d"]);
			expect(p.calls.map(c => c.params.idempotencyKey)).to.deep.equal(["createThing", "reserveStuff", "chargeMoney", "finish"].map(s => `${rec.id}:${s}`));
			expect(p.calls[0]!.params).to.include({ n: 7 });
			expect(p.calls[0]!.meta).to.include({ sagaId: rec.id, step: "createThing" });
			expect(rec.data.trail).to.deep.equal(["made"]);
			expect(rec.completedSteps).to.deep.equal(["createThing", "reserveStuff", "chargeMoney", "finish"]);
			expect(rec.history.map(h => h.event)).to.deep.equal([
				"started",
				"sent createThing", "createThing done",
				"sent reserveStuff", "reserveStuff done",
				"sent chargeMoney", "chargeMoney done",
				"sent finish", "finish done",
				"completed", "announced"
			]);
			expect(rec.history.map(h => h.state)).to.include.members(["started", "creating_thing", "reserving_stuff", "charging_money", "finishing"]);
			expect(finished.map(f => f.id)).to.deep.equal([rec.id]);
			expect(rec.announced).to.equal(true);
			expect(await store.listUnfinished()).to.not.include(rec.id);
		});

		it("records each step as started before it is sent and as done after its answer", async () => {
			const seen: SagaRecord[] = [];
			let id = "";
			const peek = async () => void seen.push((await store.get(id))!);
			const p = participant({
				"svc.b": async () => {
					await peek(); // while the call is in flight
					setTimeout(peek, 30); // during the pause before the next step
					return "ok";
				}
			});
			const e = engine(p.invoke, { stepDelayMs: 80 });
			id = (await e.start(def.name, { n: 1 })).id;
			await e.waitFor(id, { timeoutMs: 5000 });
			expect(seen).to.have.length(2);
			expect(seen[0]).to.include({ state: "reserving_stuff", status: "running", stepStatus: "started", step: 1, attempts: 1 });
			expect(seen[0]!.completedSteps).to.deep.equal(["createThing", "reserveStuff"]);
			expect(seen[1]).to.include({ state: "reserving_stuff", stepStatus: "done", step: 2, attempts: 0, version: seen[0]!.version + 1 });
		});

		it("going straight on, one write records a step's answer, the steps skipped and the next step as sent (the last answer completes the saga)", async () => {
			let id = "";
			let during: SagaRecord | null = null;
			const p = participant({
				"svc.c": async () => {
					during = await store.get(id); // what a replica taking over now would find
					return "ok";
				}
			});
			const e = engine(p.invoke);
			id = (await e.start(def.name, { n: 1, skipB: true })).id;
			await e.waitFor(id, { timeoutMs: 5000 });
			const rec = await settled(id);
			expect(rec.status).to.equal("completed");
			expect(p.actions()).to.deep.equal(["svc.a", "svc.c", "svc.d"]);
			expect(rec.history.map(h => [h.state, h.event])).to.deep.equal([
				["started", "started"],
				["creating_thing", "sent createThing"],
				["creating_thing", "createThing done"],
				["creating_thing", "skipped reserveStuff"],
				["charging_money", "sent chargeMoney"],
				["charging_money", "chargeMoney done"],
				["finishing", "sent finish"],
				["finishing", "finish done"],
				["completed", "completed"],
				["completed", "announced"]
			]);
			// Created (1), sent createThing (2), its answer + sent chargeMoney (3), its answer + sent finish (4), completed (5), announced (6).
			expect(rec.version).to.equal(6);
			expect(during).to.include({ state: "charging_money", stepStatus: "started", step: 2, attempts: 1, version: 3 });
			expect(during!.completedSteps).to.deep.equal(["createThing", "chargeMoney"]);
		});

		it("skips a step whose condition does not hold", async () => {
			const p = participant();
			const rec = await runToEnd(engine(p.invoke), { n: 1, skipB: true });
			expect(rec.status).to.equal("completed");
			expect(p.actions()).to.deep.equal(["svc.a", "svc.c", "svc.d"]);
			expect(rec.completedSteps).to.not.include("reserveStuff");
			expect(rec.history.map(h => h.event)).to.include("skipped reserveStuff");
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
				expect(rec.state).to.equal("compensated");
				expect(rec.failure).to.deep.equal({ step: def.steps.find(s => s.invoke.name === failing)!.name, message: "refused", type: "OUT_OF_STOCK", code: 409 });
				expect(p.actions().filter(a => a.includes("undo"))).to.deep.equal(undone);
				expect(p.actions().filter(a => a === failing)).to.have.length(1);
				const undoA = p.callsOf("svc.undoA")[0]!;
				expect(undoA.params).to.deep.equal({ n: 2, why: "refused", idempotencyKey: `${rec.id}:createThing:compensate` });
				expect(rec.history.map(h => h.state)).to.include("compensating_create_thing");
				expect(finished.map(f => f.status)).to.deep.equal(["compensated"]);
			});
		}

		it("an error marked not retryable is a refusal even with a 5xx code; an error with no code is retried", async () => {
			const bug = Object.assign(new Error("constraint violated"), { code: 500, retryable: false });
			const p = participant({ "svc.b": () => bug });
			const rec = await runToEnd(engine(p.invoke), { n: 2 });
			expect(rec.status).to.equal("compensated");
			expect(p.callsOf("svc.b")).to.have.length(1);

			const p2 = participant({ "svc.c": n => (n === 1 ? new Error("socket hang up") : "ok") });
			const rec2 = await runToEnd(engine(p2.invoke), { n: 2 });
			expect(rec2.status).to.equal("completed");
			expect(p2.callsOf("svc.c")).to.have.length(2);
		});

		it("a temporary failure is retried with exponential backoff, the same key, and a deadline in the store, and the saga goes on", async () => {
			const scheduled: number[] = [];
			const p = participant({ "svc.c": n => (n < 3 ? outage() : "ok") });
			const e = engine(p.invoke);
			const schedule = store.scheduleDeadline.bind(store);
			store.scheduleDeadline = async (id, at) => {
				scheduled.push(at);
				return schedule(id, at);
			};
			const rec = await runToEnd(e, { n: 3 });
			expect(rec.status).to.equal("completed");
			const sends = p.callsOf("svc.c");
			expect(sends).to.have.length(3);
			expect(new Set(sends.map(c => c.params.idempotencyKey))).to.deep.equal(new Set([`${rec.id}:chargeMoney`]));
			const retries = rec.history.filter(h => h.event === "chargeMoney failed, retry scheduled");
			expect(retries.map(h => (h.detail as any).retryInMs)).to.deep.equal([20, 40]);
			expect(sends[1]!.at - sends[0]!.at).to.be.at.least(19);
			expect(sends[2]!.at - sends[1]!.at).to.be.at.least(39);
			expect(scheduled).to.have.length(2);
			expect(rec.history.filter(h => h.event === "re-sent chargeMoney")).to.have.length(2);
			expect(await store.dueDeadlines(Date.now() + 60_000, 10)).to.not.include(rec.id);
		});

		it("a step that keeps failing past its budget compensates with the last error, itself included", async () => {
			const p = participant({ "svc.c": () => outage() });
			const rec = await runToEnd(engine(p.invoke), { n: 4 });
			expect(rec.status).to.equal("compensated");
			expect(rec.failure).to.include({ step: "chargeMoney", message: "broker hiccup", code: 503 });
			expect(p.callsOf("svc.c")).to.have.length(3);
			// A call that failed may have taken effect on the other side: it is undone too.
			expect(p.actions().filter(a => a.includes("undo"))).to.deep.equal(["svc.undoC", "svc.undoB", "svc.undoA"]);
		});

		it("names each crash point once it is reached: before a command goes out, after its answer is recorded, likewise around compensations", async () => {
			const points: string[] = [];
			const p = participant({ "svc.c": () => refusal("PAYMENT_DECLINED") });
			const rec = await runToEnd(engine(p.invoke, { crashPoint: point => void points.push(point) }), { n: 1 });
			expect(rec.status).to.equal("compensated");
			expect(points).to.deep.equal([
				"test-flow:createThing:forward:before", "test-flow:createThing:forward:after",
				"test-flow:reserveStuff:forward:before", "test-flow:reserveStuff:forward:after",
				"test-flow:chargeMoney:forward:before",
				"test-flow:chargeMoney:compensate:before", "test-flow:chargeMoney:compensate:after",
				"test-flow:reserveStuff:compensate:before", "test-flow:reserveStuff:compensate:after",
				"test-flow:createThing:compensate:before", "test-flow:createThing:compensate:after"
			]);
		});

		it("the engine's default budget applies to a step without its own", async () => {
			const p = participant({ "svc.b": () => outage() });
			const rec = await runToEnd(engine(p.invoke, { defaults: { retry: { attempts: 2, backoffMs: 1 } } }), { n: 4 });
			expect(rec.status).to.equal("compensated");
			expect(p.callsOf("svc.b")).to.have.length(2);
		});

		it("a compensation that fails for a while is retried with the same key until it succeeds", async () => {
			const p = participant({ "svc.c": () => refusal("PAYMENT_DECLINED"), "svc.undoB": n => (n < 3 ? outage() : "ok") });
			const rec = await runToEnd(engine(p.invoke), { n: 5 });
			expect(rec.status).to.equal("compensated");
			expect(p.callsOf("svc.undoB")).to.have.length(3);
			expect(new Set(p.callsOf("svc.undoB").map(c => c.params.idempotencyKey))).to.deep.equal(new Set([`${rec.id}:reserveStuff:compensate`]));
			expect(rec.compensatedSteps).to.deep.equal(["chargeMoney", "reserveStuff", "createThing"]);
			expect(rec.failure).to.include({ type: "PAYMENT_DECLINED" });
		});

		it("a compensation that keeps failing parks the saga, and an operator's retry finishes it", async () => {
			let healthy = false;
			const p = participant({ "svc.c": () => refusal("PAYMENT_DECLINED"), "svc.undoB": () => (healthy ? "ok" : outage()) });
			const e = engine(p.invoke);
			const rec = await runToEnd(e, { n: 6 });
			expect(rec.status).to.equal("parked");
			expect(rec.state).to.equal("parked");
			expect(rec.parkedReason).to.match(/svc.undoB failed: broker hiccup/);
			expect(p.callsOf("svc.undoB")).to.have.length(4);
			expect(p.actions()).to.not.include("svc.undoA");
			expect(finished).to.have.length(0);
			expect(await store.listUnfinished()).to.not.include(rec.id);

			healthy = true;
			const resumed = await e.retry(rec.id);
			expect(resumed.status).to.equal("compensated");
			expect(resumed.parkedReason).to.equal(undefined);
			expect(p.callsOf("svc.undoA")).to.have.length(1);
			expect(finished.map(f => f.id)).to.deep.equal([rec.id]);
		});

		it("a refused compensation parks the saga at once", async () => {
			const p = participant({ "svc.c": () => refusal("PAYMENT_DECLINED"), "svc.undoB": () => refusal("INVALID_TRANSITION") });
			const rec = await runToEnd(engine(p.invoke), { n: 8 });
			expect(rec.status).to.equal("parked");
			expect(p.callsOf("svc.undoB")).to.have.length(1);
		});

		it("an operator can make a parked saga compensate, and is refused for a finished one or a retry of a running one", async () => {
			let healthy = false;
			const p = participant({ "svc.b": () => outage(), "svc.undoA": () => (healthy ? "ok" : outage()) });
			const e = engine(p.invoke, { defaults: { retry: { attempts: 1, backoffMs: 1 }, parkAfterCompensationAttempts: 1 } });
			const parked = await runToEnd(e, { n: 9 });
			expect(parked.status).to.equal("parked");
			healthy = true;
			const compensated = await e.compensate(parked.id);
			expect(compensated.status).to.equal("compensated");
			expect(compensated.history.map(h => h.event)).to.include("compensation requested by an operator");

			const err = await e.compensate(compensated.id).catch(x => x);
			expect(err).to.include({ code: 409, type: "INVALID_TRANSITION" });
			await store.create(leftBehind("00000000-0000-4000-8000-000000000009", { status: "running" }));
			const notParked = await e.retry("00000000-0000-4000-8000-000000000009").catch(x => x);
			expect(notParked).to.include({ code: 409, type: "INVALID_TRANSITION" });
			const missing = await e.retry("00000000-0000-4000-8000-00000000dead").catch(x => x);
			expect(missing).to.include({ code: 404 });
		});

		it("an operator can make a running saga compensate: its driver stops and what it sent is undone", async () => {
			let release!: () => void;
			const p = participant({ "svc.b": () => new Promise(r => (release = () => r("late"))) });
			const e = engine(p.invoke);
			const rec = await e.start(def.name, { n: 10 });
			while (p.callsOf("svc.b").length === 0) await sleep(5);
			const operator = engine(p.invoke);
			const requested = await operator.compensate(rec.id);
			expect(requested.status).to.equal("compensating"); // the first driver still holds the lease
			release();
			operator.startRecoveryLoop(20); // the first driver lets go once its write fails; recovery takes over
			const end = (await e.waitFor(rec.id, { timeoutMs: 5000 }))!;
			expect(end.status).to.equal("compensated");
			expect(end.failure).to.include({ type: "OPERATOR_REQUEST", step: "reserveStuff" });
			expect(p.actions()).to.not.include("svc.c");
			expect(p.actions().filter(a => a.includes("undo"))).to.deep.equal(["svc.undoB", "svc.undoA"]);
		});

		it("after a crash mid-step, recovery re-sends the step with the same key and finishes", async () => {
			const id = "00000000-0000-4000-8000-000000000011";
			await store.create(leftBehind(id, { state: "reserving_stuff", step: 1, stepStatus: "started", attempts: 1, completedSteps: ["createThing", "reserveStuff"], data: { n: 11 }, version: 5 }));
			const p = participant();
			const fresh = engine(p.invoke);
			expect(await fresh.recover()).to.equal(1);
			const end = (await fresh.waitFor(id, { timeoutMs: 5000 }))!;
			expect(end.status).to.equal("completed");
			expect(p.actions()).to.deep.equal(["svc.b", "svc.c", "svc.d"]);
			expect(p.calls[0]!.params.idempotencyKey).to.equal(`${id}:reserveStuff`);
			expect(end.history[0]).to.include({ event: "re-sent reserveStuff" });
			expect(end.history[0]!.state).to.equal("reserving_stuff");
			expect(finished.map(f => f.id)).to.deep.equal([id]);
		});

		it("after a crash mid-compensation, recovery undoes only what is left, with the same keys", async () => {
			const id = "00000000-0000-4000-8000-000000000021";
			const failure = { step: "chargeMoney", message: "declined", type: "PAYMENT_DECLINED", code: 402 };
			await store.create(leftBehind(id, { status: "compensating", state: "compensating_reserve_stuff", step: 2, stepStatus: "started", attempts: 1, failure, completedSteps: ["createThing", "reserveStuff", "chargeMoney"], compensatedSteps: ["chargeMoney"], data: { n: 21 } }));
			const p = participant();
			expect(await engine(p.invoke).recover()).to.equal(1);
			const end = (await engines[0]!.waitFor(id, { timeoutMs: 5000 }))!;
			expect(end.status).to.equal("compensated");
			expect(p.actions()).to.deep.equal(["svc.undoB", "svc.undoA"]);
			expect(p.calls.map(c => c.params.idempotencyKey)).to.deep.equal([`${id}:reserveStuff:compensate`, `${id}:createThing:compensate`]);
			expect(p.calls[1]!.params.why).to.equal("declined");
		});

		it("a saga whose lease another replica holds is left alone until the lease expires", async () => {
			const p = participant();
			const e = engine(p.invoke, { leaseMs: 300 });
			const rec = leftBehind("00000000-0000-4000-8000-000000000012", { data: { n: 12 } });
			await store.create(rec);
			expect(await store.acquireLease(rec.id, "someone-else", 300)).to.equal(true);
			expect(await e.recover()).to.equal(0);
			const untouched = (await e.run(rec.id))!;
			expect(untouched.version).to.equal(1);
			expect(p.calls).to.have.length(0);
			await sleep(350);
			expect(await e.recover()).to.equal(1);
			expect((await e.waitFor(rec.id, { timeoutMs: 3000 }))!.status).to.equal("completed");
		});

		it("two replicas driving one saga at once send each step once", async () => {
			const p = participant({ "svc.b": () => sleep(50).then(() => "slow") });
			const a = engine(p.invoke);
			const b = engine(p.invoke);
			const rec = await a.start(def.name, { n: 13 });
			await Promise.all([a.run(rec.id), b.run(rec.id), b.recover(), a.recover()]);
			const end = (await a.waitFor(rec.id, { timeoutMs: 3000 }))!;
			expect(end.status).to.equal("completed");
			expect(p.actions()).to.deep.equal(["svc.a", "svc.b", "svc.c", "svc.d"]);
			expect(finished).to.have.length(1);
		});

		it("an engine whose saga's version moved under it stops driving that saga", async () => {
			let id = "";
			const p = participant({
				"svc.b": async () => {
					// Another replica moves the saga on while this call is in flight.
					const current = (await store.get(id))!;
					expect(await store.compareAndSet({ ...current, state: "moved elsewhere" }, current.version)).to.equal(true);
					return "ok";
				}
			});
			const e = engine(p.invoke);
			id = (await e.start(def.name, { n: 14 })).id;
			await sleep(200);
			const rec = (await store.get(id))!;
			expect(rec.state).to.equal("moved elsewhere");
			expect(rec.step).to.equal(1);
			expect(p.actions()).to.deep.equal(["svc.a", "svc.b"]);
		});

		it("an engine that lost its lease writes nothing more and sends no further step", async () => {
			let id = "";
			const p = participant({
				"svc.b": async () => {
					// The lease is lost while the call is in flight (say the process stalled) and another replica takes it.
					await store.releaseLease(id, "owner-0");
					expect(await store.acquireLease(id, "intruder", 5000)).to.equal(true);
					return "ok";
				}
			});
			const e = engine(p.invoke);
			id = (await e.start(def.name, { n: 22 })).id;
			await sleep(200);
			expect(p.actions()).to.deep.equal(["svc.a", "svc.b"]);
			// svc.b's answer is not recorded either: the lease's holder sends svc.b again, with the same key.
			expect((await store.get(id))!).to.include({ status: "running", step: 1, stepStatus: "started" });
		});

		it("an answer that comes after the lease lapsed, with nobody taking it, is recorded and the saga goes on", async () => {
			let id = "";
			const p = participant({
				"svc.b": async () => {
					// A call slower than the lease (a database restarting): the lease lapses, no replica claims it.
					await store.releaseLease(id, "owner-0");
					return "ok";
				}
			});
			const e = engine(p.invoke);
			id = (await e.start(def.name, { n: 23 })).id;
			const rec = await e.waitFor(id, { timeoutMs: 2000 });
			expect(rec!.status).to.equal("completed");
			expect(p.actions().filter(a => a === "svc.b")).to.have.length(1);
		});

		it("a write with a stale version is refused and leaves the record as it was", async () => {
			const p = participant();
			const rec = await runToEnd(engine(p.invoke), { n: 14 });
			expect(await store.compareAndSet({ ...rec, state: "tampered" }, rec.version - 1)).to.equal(false);
			expect((await store.get(rec.id))!.state).to.equal("completed");
			expect((await store.get(rec.id))!.version).to.equal(rec.version);
		});

		it("starting a saga with an id that exists is refused", async () => {
			const p = participant();
			const e = engine(p.invoke);
			const rec = await e.start(def.name, { n: 19 });
			const err = await e.start(def.name, { n: 19 }, { sagaId: rec.id }).catch(x => x);
			expect(err).to.be.instanceOf(SagaExistsError);
		});

		it("a retry due later than the in-process limit becomes a deadline that another replica fires", async () => {
			let up = false;
			const p = participant({ "svc.c": () => (up ? "ok" : outage()) });
			const slowRetry = saga<Data>("test-flow").step("chargeMoney", { invoke: Svc.c, params: d => ({ n: d.n }), retry: { attempts: 2, backoffMs: 300 } });
			const a = engine(p.invoke, { definitions: [slowRetry], maxInProcessWaitMs: 50 });
			const rec = await a.start("test-flow", { n: 15 });
			await sleep(100);
			expect(await store.dueDeadlines(Date.now(), 10)).to.not.include(rec.id);
			expect(await store.dueDeadlines(Date.now() + 400, 10)).to.include(rec.id);
			const b = engine(p.invoke, { definitions: [slowRetry], maxInProcessWaitMs: 50 });
			expect(await b.recover()).to.equal(0);
			up = true;
			await sleep(300);
			expect(await b.recover()).to.equal(1);
			expect((await b.waitFor(rec.id, { timeoutMs: 3000 }))!.status).to.equal("completed");
			expect(await store.dueDeadlines(Date.now() + 60_000, 10)).to.not.include(rec.id);
		});

		it("stopping an engine interrupts its wait for a retry and frees the saga for another replica", async () => {
			const p = participant({ "svc.a": n => (n === 1 ? outage() : "ok") });
			const e = engine(p.invoke, { defaults: { retry: { attempts: 2, backoffMs: 2000 } } });
			const rec = await e.start(def.name, { n: 20 });
			while (!(await store.get(rec.id))!.nextAttemptAt) await sleep(5);
			const t0 = Date.now();
			await e.stop();
			expect(Date.now() - t0).to.be.below(500);
			expect(await store.acquireLease(rec.id, "another-replica", 1000)).to.equal(true);
			expect(p.callsOf("svc.a")).to.have.length(1);
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
			const { id } = await e.start(def.name, { n: 16 });
			await e.waitFor(id, { timeoutMs: 5000 });
			await sleep(50); // the first driver tries to announce and lets go of the lease
			const rec = (await store.get(id))!;
			expect(rec.status).to.equal("completed");
			expect(rec.announced).to.equal(false);
			expect(await store.listUnfinished()).to.include(rec.id);
			fail = false;
			expect(await e.recover()).to.equal(1);
			await sleep(100);
			expect(announced).to.deep.equal([rec.id]);
			expect(await store.listUnfinished()).to.not.include(rec.id);
			expect(p.calls).to.have.length(4);
		});

		it("lists sagas newest first, by state and type, a page at a time", async () => {
			const p = participant({ "svc.b": () => refusal() });
			const e = engine(p.invoke);
			const first = await runToEnd(e, { n: 17 });
			await sleep(5);
			const second = await runToEnd(e, { n: 18 });
			const all = await store.list({ type: def.name });
			expect(all.rows.map(r => r.id)).to.deep.equal([second.id, first.id]);
			expect((await store.list({ state: "compensated" })).total).to.equal(2);
			expect((await store.list({ state: "completed" })).total).to.equal(0);
			const page2 = await store.list({ limit: 1, offset: 1 });
			expect(page2).to.deep.include({ total: 2 });
			expect(page2.rows.map(r => r.id)).to.deep.equal([first.id]);
		});
	});
}
