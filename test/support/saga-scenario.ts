/**
 * Given/expect tests of a saga definition, with the real engine, the in-process store and a
 * clock the test moves on itself — no participants, no broker, no real sleeps. The scenario
 * plays every participant: each command the engine sends waits until the test answers it.
 *
 *   const t = await sagaScenario(placeOrder, data);      // started: the first command is out
 *   t.expectCommand(Carts.lock, { cartId });              // expect: the command sent, its params (a subset)
 *   await t.reply({ cartId, lines, total });              // given its reply: the engine goes on
 *   t.expectCommand(Inventory.reserve);
 *   await t.fail(refused("OUT_OF_STOCK"));                // given a refusal (or outage(): worth a retry)
 *   t.expectCompensation(Orders.fail, { code: "OUT_OF_STOCK" });
 *   await t.reply(null);
 *   …
 *   await t.expectEnd("compensated");
 *
 * Waiting steps and time:
 *   await t.expectWaiting(PaymentEvents.authorized);                         // the command answered, the wait began
 *   await t.event(PaymentEvents.authorized, orderId, { paymentId, … });      // given the event (answers what deliver said)
 *   await t.passDeadline();                                                  // given the deadline passed
 *   await t.passTime(ms);                                                    // any time; fires due retries and deadlines
 *   await t.restart();                                                       // the orchestrator dies; a fresh replica takes over
 *
 * Every `reply` / `fail` / `event` / `pass…` returns once the engine has sent its next command
 * or has nothing left to do. Retries are never waited for in-process here: they are deadlines
 * in the store, fired by `passTime`. `t.sent` lists every command in order ({ action, params,
 * compensation }). `t.record()` is the saga's record.
 */
import { expect } from "chai";
import { Errors } from "moleculer";
import type { ActionRef, EventRef } from "../../contracts/actions";
import { Clock, Delivery, MemorySagaStore, SagaDefinition, SagaEngine, SagaRecord, SagaStatus } from "../../sagas";

/** A refusal: a participant's 4xx answer (compensates at once before the pivot, parks after it). */
export function refused(type: string, code = 409, message = `refused: ${type}`): Error {
	return new Errors.MoleculerClientError(message, code, type);
}

/** A temporary failure: worth a retry. */
export function outage(message = "service unavailable"): Error {
	return new Errors.MoleculerRetryableError(message, 503, "SERVICE_UNAVAILABLE");
}

/** A clock that moves only when told. */
export class ManualClock implements Clock {
	private sleepers: Array<{ at: number; wake: () => void }> = [];
	constructor(private t = Date.parse("2026-01-01T12:00:00Z")) {}

	now(): number {
		return this.t;
	}

	advance(ms: number): void {
		this.t += ms;
		const due = this.sleepers.filter(s => s.at <= this.t);
		this.sleepers = this.sleepers.filter(s => s.at > this.t);
		for (const s of due) s.wake();
	}

	sleep(ms: number, signal: AbortSignal): Promise<void> {
		return new Promise((resolve, reject) => {
			if (signal.aborted) return reject(new Error("aborted"));
			const sleeper = { at: this.t + ms, wake: () => resolve() };
			this.sleepers.push(sleeper);
			signal.addEventListener("abort", () => {
				this.sleepers = this.sleepers.filter(s => s !== sleeper);
				reject(new Error("aborted"));
			});
		});
	}
}

export interface SentCommand {
	action: string;
	params: Record<string, any>;
	compensation: boolean;
}

interface Pending extends SentCommand {
	resolve: (reply: unknown) => void;
	reject: (err: unknown) => void;
}

const quiet = { info() {}, warn() {}, error() {} };
const tick = () => new Promise<void>(resolve => setImmediate(resolve));

export class SagaScenario<D> {
	readonly clock = new ManualClock();
	readonly store = new MemorySagaStore();
	readonly sent: SentCommand[] = [];
	private pending: Pending[] = [];
	private engine!: SagaEngine;
	private replicas = 0;
	private owner = "";
	id = "";

	constructor(readonly definition: SagaDefinition<D>) {
		this.engine = this.newEngine();
	}

	private newEngine(): SagaEngine {
		this.owner = `scenario-replica-${++this.replicas}:x`;
		return new SagaEngine({
			store: this.store,
			definitions: [this.definition],
			owner: this.owner,
			leaseMs: 60_000,
			logger: quiet,
			clock: this.clock,
			maxInProcessWaitMs: 0,
			invoke: (action, params) =>
				new Promise((resolve, reject) => {
					const compensation = String(params.idempotencyKey ?? "").endsWith(":compensate");
					const { idempotencyKey: _key, ...rest } = params;
					const command = { action, params: rest, compensation };
					this.sent.push(command);
					this.pending.push({ ...command, resolve, reject });
				})
		});
	}

	async start(data: D, sagaId?: string): Promise<this> {
		this.id = (await this.engine.start(this.definition.name, data, { sagaId })).id;
		await this.settle();
		return this;
	}

	/** Waits until the engine has sent a command or has nothing left to do. */
	async settle(): Promise<void> {
		for (let i = 0; i < 10_000; i++) {
			if (this.pending.length > 0 || !this.engine.busy) {
				await tick();
				if (this.pending.length > 0 || !this.engine.busy) return;
			}
			await tick();
		}
		throw new Error("The engine neither sent a command nor went idle");
	}

	private current(): Pending {
		const p = this.pending[0];
		if (!p) throw new Error(`No command is waiting for an answer; sent so far: ${this.sent.map(s => s.action).join(", ")}`);
		return p;
	}

	/** Expect: the command now sent is `ref` (a forward step), with at least these params. */
	expectCommand<P>(ref: ActionRef<P, unknown>, params?: Partial<P>): P {
		const p = this.current();
		expect({ action: p.action, compensation: p.compensation }, `the command now sent`).to.deep.equal({ action: ref.name, compensation: false });
		if (params) expect(p.params).to.deep.include(params);
		return p.params as P;
	}

	/** Expect: the command now sent is the compensation `ref`, with at least these params. */
	expectCompensation<P>(ref: ActionRef<P, unknown>, params?: Partial<P>): P {
		const p = this.current();
		expect({ action: p.action, compensation: p.compensation }, `the command now sent`).to.deep.equal({ action: ref.name, compensation: true });
		if (params) expect(p.params).to.deep.include(params);
		return p.params as P;
	}

	/** Expect: nothing is waiting for an answer. */
	expectNoCommand(): void {
		expect(this.pending.map(p => p.action), "commands waiting for an answer").to.deep.equal([]);
	}

	/** Given: the command now sent answers `reply`. */
	async reply<R>(reply?: R): Promise<this> {
		const p = this.pending.shift();
		if (!p) throw new Error("No command is waiting for an answer");
		p.resolve(reply ?? null);
		await this.settle();
		return this;
	}

	/** Given: the command now sent fails with `err` (see refused(), outage()). */
	async fail(err: Error): Promise<this> {
		const p = this.pending.shift();
		if (!p) throw new Error("No command is waiting for an answer");
		p.reject(err);
		await this.settle();
		return this;
	}

	/** Given: an outside event (answers what the engine did with it). */
	async event<P>(ref: EventRef<P>, key: string, payload: P): Promise<Delivery> {
		const delivery = await this.engine.deliver(ref.name, key, payload);
		await this.settle();
		return delivery;
	}

	/** Given: `ms` pass; due retries and deadlines fire (as a replica's recovery would). */
	async passTime(ms: number): Promise<this> {
		this.clock.advance(ms);
		await this.engine.recover();
		await this.settle();
		return this;
	}

	/** Given: the waiting step's deadline passes. */
	async passDeadline(): Promise<this> {
		const until = (await this.record()).wait?.until;
		if (until === undefined) throw new Error("The saga is not waiting");
		return this.passTime(until - this.clock.now());
	}

	/**
	 * Given: the orchestrator dies — its commands in flight are never answered, it writes nothing
	 * more — its lease expires, and a fresh replica recovers the saga.
	 */
	async restart(): Promise<this> {
		const deadOwner = this.owner;
		this.pending.splice(0); // left unanswered forever: the dead engine stays stuck in its call
		await this.store.releaseLease(this.id, deadOwner);
		this.engine = this.newEngine();
		await this.engine.recover();
		await this.settle();
		return this;
	}

	async record(): Promise<SagaRecord<D>> {
		return (await this.store.get(this.id)) as SagaRecord<D>;
	}

	/** Expect: the step has answered and the saga waits for `ref`. */
	async expectWaiting(ref: EventRef<unknown>): Promise<SagaRecord<D>> {
		const rec = await this.record();
		expect({ stepStatus: rec.stepStatus, events: rec.wait?.events }, "the saga's wait").to.deep.equal({ stepStatus: "waiting", events: [ref.name] });
		this.expectNoCommand();
		return rec;
	}

	/** Expect: a retry is scheduled; answers in how many ms. */
	async expectRetryScheduled(): Promise<number> {
		const rec = await this.record();
		expect(rec.nextAttemptAt, "a retry scheduled").to.be.a("number");
		this.expectNoCommand();
		return rec.nextAttemptAt! - this.clock.now();
	}

	/** Expect: the saga ended with `status` and nothing is left to send. */
	async expectEnd(status: SagaStatus): Promise<SagaRecord<D>> {
		this.expectNoCommand();
		const rec = await this.record();
		expect(rec.status, `the saga's end (state ${rec.state}, failure ${JSON.stringify(rec.failure)}, parked ${rec.parkedReason})`).to.equal(status);
		return rec;
	}

	/** The actions sent so far, compensations marked "undo ". */
	trail(): string[] {
		return this.sent.map(s => (s.compensation ? `undo ${s.action}` : s.action));
	}

	/** The engine, for operator commands (retry, compensate). */
	get operator(): SagaEngine {
		return this.engine;
	}

	async stop(): Promise<void> {
		for (const p of this.pending.splice(0)) p.reject(new Error("scenario over"));
		await this.engine.stop();
	}
}

/** Starts `definition` with `data`; the first command is out when it resolves. */
export async function sagaScenario<D>(definition: SagaDefinition<D>, data: D, opts: { sagaId?: string } = {}): Promise<SagaScenario<D>> {
	return new SagaScenario(definition).start(data, opts.sagaId);
}
