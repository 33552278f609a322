/**
 * Runs saga definitions. Every change of a saga is a compare-and-set on its version in the
 * store, made before a step is sent and after its answer, so a crash at any point leaves a
 * record from which any replica can go on: a step recorded as started is sent again with the
 * same idempotency key (`<sagaId>:<step>`), and the participant answers as it did the first time.
 * Where the saga goes straight on, one write records a step's answer and the next step as sent.
 *
 * Forward steps retry with backoff within their budget, then the saga compensates; a refusal
 * compensates at once. Compensations run in reverse for every step that was sent, retry until
 * they succeed, and after too many failures (or a refusal) park the saga for an operator.
 * Steps after the pivot never compensate: they retry until they succeed (a refusal parks).
 *
 * A waiting step records its wait (the event keys) before its command is sent, and its deadline
 * once the command answered; `deliver` hands it the outside event, from any replica. The
 * deadline is one in the store, fired by whichever replica's recovery sees it due.
 *
 * Time comes from `clock` (real by default), so tests move time on instead of sleeping.
 */
import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { compensationState, Failure, forwardState, INITIAL_STATE, SagaDefinition, StepDefinition, waitingState } from "./definition";
import { isUnfinished, SagaExistsError, SagaRecord, SagaStore, SagaWait, TERMINAL } from "./store";

/** Where the engine's time comes from. `sleep` rejects (or resolves early) when the signal aborts. */
export interface Clock {
	now(): number;
	sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
	now: () => Date.now(),
	sleep: (ms, signal) => sleep(ms, undefined, { signal })
};

/** What `deliver` did with an outside event. */
export type Delivery =
	| { accepted: true; sagaId: string }
	| { accepted: false; sagaId?: string; reason: "no saga waits for it" | "the wait ended" | "the deadline passed" | "already received" };

/** A failure after the pivot backs off at most this long between attempts. */
const MAX_BACKOFF_MS = 30_000;

export type Invoke = (action: string, params: Record<string, unknown>, opts: { meta: { correlationId?: string; sagaId: string; step: string }; timeout?: number }) => Promise<any>;

export interface SagaLogger {
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

export interface EngineDefaults {
	/** Attempts and first backoff of a step that fails for a reason worth retrying (backoff doubles per attempt). */
	retry: { attempts: number; backoffMs: number };
	/** First backoff of a failed compensation (doubles per attempt, at most 30 s). */
	compensationBackoffMs: number;
	/** Failures of one compensation after which the saga is parked for an operator. */
	parkAfterCompensationAttempts: number;
}

export interface EngineOptions {
	store: SagaStore;
	invoke: Invoke;
	definitions: SagaDefinition<any>[];
	/** Who this replica is; leases carry it. */
	owner: string;
	leaseMs?: number;
	logger?: SagaLogger;
	defaults?: Partial<EngineDefaults>;
	/** A pause before each step (demos, crash tests). */
	stepDelayMs?: number;
	/** Retries due sooner than this wait in the driving process; later ones are left to the deadline in the store. */
	maxInProcessWaitMs?: number;
	/** Called once a saga is completed or compensated — again after a crash before it was recorded: handle duplicates. */
	onFinished?: (rec: SagaRecord) => Promise<void>;
	/** Real time by default; tests pass a clock they move on themselves. */
	clock?: Clock;
	/** Told about starts, step outcomes and ends (metrics); its errors are ignored. */
	listener?: SagaListener;
	/** Crash tests: called at each point a process may die (`<saga>:<step>:<phase>:<before|after>`). */
	crashPoint?: (point: string) => void;
}

/**
 * Optional observer of what the engine does (the checkout service feeds Moleculer's metrics
 * from it). Each call is made once per change actually recorded by this engine.
 */
export interface SagaListener {
	started?(rec: SagaRecord): void;
	/** A forward step or a compensation answered (`ok`) or failed, after `durationMs`. */
	step?(rec: SagaRecord, step: string, phase: "forward" | "compensate", outcome: "ok" | "failed", durationMs: number): void;
	/** The saga reached `completed`, `compensated` or `parked`. */
	finished?(rec: SagaRecord): void;
}

/** What an operator asked for does not fit the saga (code and type as the gateway maps them). */
export class SagaOperatorError extends Error {
	constructor(message: string, readonly code: number, readonly type: string) {
		super(message);
		this.name = "SagaOperatorError";
	}
}

/** A refusal is an answer: retrying it would only get the same answer. */
export function isRefusal(err: any): boolean {
	if (err?.retryable === true) return false;
	if (err?.retryable === false) return true;
	return typeof err?.code === "number" && err.code >= 400 && err.code < 500;
}

export class SagaEngine {
	private definitions = new Map<string, SagaDefinition<any>>();
	private store: SagaStore;
	private logger: SagaLogger;
	private defaults: EngineDefaults;
	private changes = new EventEmitter();
	/** When this replica last extended the lease of each saga it drives (a renewal or a write). */
	private leaseExtendedAt = new Map<string, number>();
	private abort = new AbortController();
	private recoveryTimer: NodeJS.Timeout | null = null;
	private running = new Set<Promise<unknown>>();
	/** Sagas this engine is driving right now: recovery leaves them alone. */
	private driving = new Set<string>();
	private clock: Clock;

	constructor(private opts: EngineOptions) {
		this.store = opts.store;
		this.clock = opts.clock ?? systemClock;
		this.logger = opts.logger ?? console;
		this.defaults = { retry: { attempts: 3, backoffMs: 200 }, compensationBackoffMs: 200, parkAfterCompensationAttempts: 20, ...opts.defaults };
		for (const d of opts.definitions) this.definitions.set(d.name, d);
		this.changes.setMaxListeners(0);
	}

	private get leaseMs() {
		return this.opts.leaseMs ?? 15_000;
	}

	/** Creates the saga (state `started`) and drives it in the background; SagaExistsError when the id exists. */
	async start<D>(type: string, data: D, opts: { sagaId?: string; correlationId?: string } = {}): Promise<SagaRecord<D>> {
		const def = this.definition(type);
		const now = this.iso();
		const rec: SagaRecord<D> = {
			id: opts.sagaId ?? randomUUID(),
			type,
			state: INITIAL_STATE,
			status: "running",
			step: 0,
			stepStatus: "pending",
			data,
			version: 1,
			attempts: 0,
			correlationId: opts.correlationId,
			completedSteps: [],
			compensatedSteps: [],
			announced: false,
			history: [{ at: now, state: INITIAL_STATE, event: "started", detail: { steps: def.steps.map(s => s.name) } }],
			createdAt: now,
			updatedAt: now
		};
		await this.store.create(rec);
		this.log("info", rec, "started");
		this.tell(l => l.started?.(rec));
		this.background(rec.id);
		return rec;
	}

	/**
	 * Drives the saga until it is terminal or must wait for a later retry, holding its lease.
	 * When another replica holds the lease it answers the record without touching it.
	 */
	async run(id: string): Promise<SagaRecord | null> {
		const { owner } = this.opts;
		if (this.driving.has(id)) return this.store.get(id);
		this.driving.add(id);
		try {
			if (!(await this.store.acquireLease(id, owner, this.leaseMs))) return await this.store.get(id);
			// Renewed while a step is in flight too: a slow call must not let another replica in. Every
			// write the driver makes extends the lease as well (transition), so a renewal is sent only
			// when none did for a third of the lease.
			const every = Math.max(50, this.leaseMs / 3);
			this.leaseExtendedAt.set(id, Date.now());
			const renew = setInterval(() => {
				if (Date.now() - (this.leaseExtendedAt.get(id) ?? 0) < every) return;
				void this.store.renewLease(id, owner, this.leaseMs).then(ok => ok && this.leaseExtendedAt.set(id, Date.now()), () => undefined);
			}, every / 2); // looked at twice as often: at most half a third more between two extensions
			try {
				return await this.drive(id);
			} finally {
				clearInterval(renew);
				this.leaseExtendedAt.delete(id);
				await this.store.releaseLease(id, owner).catch(() => undefined);
			}
		} finally {
			this.driving.delete(id);
		}
	}

	/**
	 * Resolves when the saga has ended and its end was announced (or `done` says so), or at the timeout with its current
	 * record. A change this engine makes hands over the new record itself; the store is read
	 * again only every 100 ms, for a saga another replica drives.
	 */
	async waitFor(id: string, opts: { timeoutMs: number; done?: (rec: SagaRecord) => boolean }): Promise<SagaRecord | null> {
		const until = Date.now() + opts.timeoutMs;
		const done = opts.done ?? ((rec: SagaRecord) => !isUnfinished(rec));
		let rec = await this.store.get(id);
		while (rec && !done(rec) && Date.now() < until) {
			const changed = await new Promise<SagaRecord | null>(resolve => {
				const settle = (next: SagaRecord | null) => {
					clearTimeout(timer);
					this.changes.off(id, settle);
					resolve(next);
				};
				const timer = setTimeout(() => settle(null), Math.min(100, Math.max(0, until - Date.now())));
				this.changes.on(id, settle);
			});
			// A saga this engine drives hands over its every change (above): the store is read only for
			// one it does not drive (another replica's, or one waiting between runs).
			rec = changed ?? (this.driving.has(id) ? rec : await this.store.get(id));
		}
		return rec;
	}

	/**
	 * Creates the saga unless one with this id exists (create-if-absent in the store, one atomic
	 * step), and answers the record either way: a request repeated with the same derived id
	 * finds the saga its first attempt made.
	 */
	async startOnce<D>(type: string, data: D, opts: { sagaId: string; correlationId?: string }): Promise<{ record: SagaRecord<D>; created: boolean }> {
		try {
			return { record: await this.start(type, data, opts), created: true };
		} catch (err) {
			if (!(err instanceof SagaExistsError)) throw err;
			const record = (await this.store.get(opts.sagaId)) as SagaRecord<D> | null;
			if (!record) throw err;
			return { record, created: false };
		}
	}

	/**
	 * Hands an outside event to the saga whose waiting step waits for it (matched by
	 * "<event>|<key>"). An event that arrives while the command is still in flight is kept and
	 * acted on once it answered. A wait that already ended (event received, deadline passed,
	 * compensated) ignores the event and says why, for the caller to log.
	 */
	async deliver(eventName: string, key: string, payload: unknown): Promise<Delivery> {
		const entry = `${eventName}|${key}`;
		const id = await this.store.findWait(entry);
		if (!id) return { accepted: false, reason: "no saga waits for it" };
		for (let attempt = 0; attempt < 10; attempt++) {
			const rec = await this.store.get(id);
			const wait = rec?.wait;
			if (!rec || !wait || rec.status !== "running" || !wait.keys.includes(entry)) return { accepted: false, sagaId: id, reason: "the wait ended" };
			if (wait.received) return { accepted: false, sagaId: id, reason: "already received" };
			if (rec.stepStatus === "waiting" && wait.until !== undefined && wait.until <= this.clock.now()) {
				this.background(id); // the deadline wins: let it fire now
				return { accepted: false, sagaId: id, reason: "the deadline passed" };
			}
			const next = await this.transition(rec, { wait: { ...wait, received: { event: eventName, payload, at: this.iso() } } }, `${eventName} received`, undefined, { unleased: true });
			if (next) {
				if (next.stepStatus === "waiting") this.background(id);
				return { accepted: true, sagaId: id };
			}
		}
		throw new Error(`Saga ${id} kept changing while an event was handed to it; deliver again`);
	}

	/**
	 * A replica is gone (Moleculer reported its node disconnected): frees the leases it held, so
	 * recovery takes its sagas over now instead of when the leases expire. Owners are
	 * `<nodeID>:<suffix>`. Answers how many sagas were resumed.
	 */
	async takeOver(nodeID: string): Promise<number> {
		const ids = await this.store.listUnfinished();
		const holders = await this.store.leaseHolders(ids);
		for (const [i, id] of ids.entries()) {
			const holder = holders[i];
			if (holder && holder.startsWith(`${nodeID}:`) && holder !== this.opts.owner) await this.store.releaseLease(id, holder);
		}
		return this.recover();
	}

	/** Takes up every unfinished saga whose lease is free (its driver died) and every due deadline. Answers how many. */
	async recover(): Promise<number> {
		const now = this.clock.now();
		const [due, unfinished] = await Promise.all([this.store.dueDeadlines(now, 500), this.store.listUnfinished()]);
		const ids = [...new Set([...due, ...unfinished])].filter(id => !this.driving.has(id));
		// A saga another replica drives (its lease is live) is not even read: with many sagas in
		// flight, reading and parsing every one on every pass of every replica was most of a
		// replica's own work. The leases are read at once (one round trip per shard, not one per
		// saga: with four replicas that was most of the Redis commands of a pass). When a driver
		// dies, its lease lapses and a later pass takes the saga.
		const holders = await this.store.leaseHolders(ids);
		let resumed = 0;
		for (const [i, id] of ids.entries()) {
			if (this.driving.has(id) || this.abort.signal.aborted) continue;
			if (holders[i]) continue;
			const rec = await this.store.get(id);
			if (!rec || !isUnfinished(rec)) {
				await this.store.clearDeadline(id);
				continue;
			}
			if (!this.definitions.has(rec.type)) continue; // another engine's saga
			if (rec.nextAttemptAt && rec.nextAttemptAt > now + this.maxInProcessWaitMs) continue; // its deadline wakes it
			if (isWaiting(rec, now)) continue; // its event or its deadline wakes it
			if (await this.store.acquireLease(id, this.opts.owner, this.leaseMs)) {
				resumed++;
				this.background(id);
			}
		}
		return resumed;
	}

	startRecoveryLoop(intervalMs: number): void {
		const tick = async () => {
			try {
				const n = await this.recover();
				if (n > 0) this.logger.info(`Resumed ${n} saga(s) left by another replica or due for a retry`);
			} catch (err) {
				this.logger.warn("Saga recovery failed", err);
			}
			if (!this.abort.signal.aborted) this.recoveryTimer = setTimeout(tick, intervalMs);
		};
		this.recoveryTimer = setTimeout(tick, 0);
	}

	/** Stops driving: sagas in flight stop after their current call; their leases are released. */
	async stop(): Promise<void> {
		this.abort.abort();
		if (this.recoveryTimer) clearTimeout(this.recoveryTimer);
		await Promise.allSettled([...this.running]);
	}

	/** Operator: resume a parked saga where it stopped. */
	async retry(id: string): Promise<SagaRecord> {
		const rec = await this.mustGet(id);
		if (rec.status !== "parked") throw new SagaOperatorError(`Saga is ${rec.status}, not parked`, 409, "INVALID_TRANSITION");
		const status = rec.failure ? "compensating" : "running";
		return this.operatorTransition(rec, { status, attempts: 0, parkedReason: undefined, nextAttemptAt: undefined }, "retried by an operator");
	}

	/** Operator: give up on a saga that is not finished and undo what it did. */
	async compensate(id: string): Promise<SagaRecord> {
		const rec = await this.mustGet(id);
		if (rec.status === "completed" || rec.status === "compensated") throw new SagaOperatorError(`Saga is ${rec.status}`, 409, "INVALID_TRANSITION");
		const pivot = this.definition(rec.type).pivotIndex;
		if (pivot >= 0 && rec.step > pivot && !rec.failure) {
			throw new SagaOperatorError(`Saga passed its point of no return (${this.definition(rec.type).steps[pivot]!.name}): it can only go forward`, 409, "INVALID_TRANSITION");
		}
		const failure: Failure = rec.failure ?? { step: this.definition(rec.type).steps[rec.step]?.name ?? "operator", message: "Compensation requested by an operator", type: "OPERATOR_REQUEST" };
		if (rec.wait) await this.store.clearWait(rec.id, rec.wait.keys);
		return this.operatorTransition(rec, { status: "compensating", failure, attempts: 0, parkedReason: undefined, nextAttemptAt: undefined, wait: undefined }, "compensation requested by an operator");
	}

	// --- Driving ---------------------------------------------------------------------------

	private async drive(id: string): Promise<SagaRecord | null> {
		let rec = await this.store.get(id);
		while (rec && !this.abort.signal.aborted) {
			if (TERMINAL.has(rec.status)) {
				if (isUnfinished(rec)) rec = (await this.announce(rec)) ?? (await this.store.get(id));
				return rec;
			}
			if (isWaiting(rec, this.clock.now())) return rec; // its event or its deadline wakes a replica
			const wait = (rec.nextAttemptAt ?? 0) - this.clock.now();
			if (wait > this.maxInProcessWaitMs) return rec; // the deadline in the store wakes a replica then
			if (wait > 0 && !(await this.pause(wait))) return rec;
			// Every write made while driving checks that this replica still holds the lease and extends it (transition).
			const next = rec.status === "running" ? await this.forward(rec) : await this.compensateNext(rec);
			if (!next) return this.store.get(id); // the version moved or the lease was lost: another replica has it
			rec = next;
		}
		return rec;
	}

	private async forward(rec: SagaRecord): Promise<SagaRecord | null> {
		const step = this.definition(rec.type).steps[rec.step];
		if (!step) return this.transition(rec, { status: "completed", state: "completed", attempts: 0 }, "completed");
		if (rec.stepStatus === "waiting") return this.endWait(rec, step);
		const fresh = rec.stepStatus !== "started";
		if (fresh && step.when && !step.when(rec.data)) return this.transition(rec, { step: rec.step + 1, stepStatus: "pending", attempts: 0 }, `skipped ${step.name}`);
		if (fresh && this.opts.stepDelayMs && !(await this.pause(this.opts.stepDelayMs))) return null;

		// A waiting step's wait is indexed before its command goes out: the event may come before the answer.
		const mayWait = !!step.await && (!step.await.mayWait || step.await.mayWait(rec.data));
		let wait = rec.wait;
		if (mayWait && step.await && (fresh || !wait)) {
			const key = step.await.key(rec.data);
			const names = [step.await.event.name, ...step.await.failOn.map(e => e.name)];
			wait = { step: step.name, keys: names.map(n => `${n}|${key}`), events: [step.await.event.name], failOn: step.await.failOn.map(e => e.name) };
		}
		if (wait) await this.store.indexWait(rec.id, wait.keys);

		const sending = await this.transition(
			rec,
			{
				state: forwardState(step.name),
				stepStatus: "started",
				attempts: rec.attempts + 1,
				nextAttemptAt: undefined,
				wait,
				completedSteps: rec.completedSteps.includes(step.name) ? rec.completedSteps : [...rec.completedSteps, step.name]
			},
			fresh ? `sent ${step.name}` : `re-sent ${step.name}`
		);
		if (!sending) return null;
		if (rec.nextAttemptAt) await this.store.clearDeadline(rec.id);
		return this.send(sending, step, mayWait);
	}

	/**
	 * Sends a step recorded as sent and records its answer. When the next step is an ordinary
	 * one (it cannot wait for an event, no pause before steps), the same write records it as
	 * sent too — "<step> done", any "skipped …", "sent <next>" in one compare-and-set — and it
	 * goes out at once; after the last step that write completes the saga. A crash after that
	 * write leaves the next step recorded as sent, so a replica sends it again with its key:
	 * what a crash just after any "sent" write does.
	 */
	private async send(sending: SagaRecord, step: StepDefinition<any>, mayWait: boolean): Promise<SagaRecord | null> {
		for (;;) {
			const { type, id } = sending;
			let reply: unknown;
			this.opts.crashPoint?.(`${type}:${step.name}:forward:before`);
			const sentAt = this.clock.now();
			try {
				reply = await this.opts.invoke(step.invoke.name, { ...step.params(sending.data), idempotencyKey: `${id}:${step.name}` }, this.callOptions(sending, step.name, step.timeoutMs));
			} catch (err: any) {
				this.tell(l => l.step?.(sending, step.name, "forward", "failed", this.clock.now() - sentAt));
				return this.stepFailed(sending, step, err);
			}
			this.tell(l => l.step?.(sending, step.name, "forward", "ok", this.clock.now() - sentAt));
			const data = step.onReply ? step.onReply(sending.data, reply) : sending.data;
			if (mayWait && step.await && (!step.await.when || step.await.when(data, reply))) {
				const deadlineMs = step.await.deadlineMs(data);
				const until = this.clock.now() + deadlineMs;
				const waiting = await this.afterCall(sending, current => ({
					changes: { data, stepStatus: "waiting", state: waitingState(step.name), attempts: 0, wait: { ...current.wait!, until } },
					event: `${step.name} answered; waiting for ${current.wait!.events.join(" / ")}`,
					detail: { deadlineMs }
				}));
				if (waiting && !waiting.wait?.received) await this.store.scheduleDeadline(id, until);
				if (waiting) this.opts.crashPoint?.(`${type}:${step.name}:wait`);
				return waiting;
			}
			const ahead = this.opts.stepDelayMs ? null : this.straightOn(sending, data);
			const done = await this.afterCall(sending, () => ({
				changes: { data, step: sending.step + 1, stepStatus: "done", attempts: 0, wait: undefined, ...ahead?.changes },
				event: `${step.name} done`,
				also: ahead?.events
			}));
			if (done && sending.wait) await this.store.clearWait(id, sending.wait.keys);
			if (!done) return null;
			this.opts.crashPoint?.(`${type}:${step.name}:forward:after`);
			if (!ahead?.next || this.abort.signal.aborted) return done;
			sending = done;
			step = ahead.next;
			mayWait = false;
		}
	}

	/**
	 * What the write of a step's answer can also record when the saga goes straight on: the
	 * steps after it that are skipped, then the next step as sent (`next`), or the saga as
	 * completed after the last step. Null when the next step needs a write of its own first
	 * (it may wait for an event, so its wait is indexed before it is sent).
	 */
	private straightOn(sending: SagaRecord, data: unknown): { changes: Partial<SagaRecord>; events: Array<{ state: string; event: string }>; next?: StepDefinition<any> } | null {
		const steps = this.definition(sending.type).steps;
		const events: Array<{ state: string; event: string }> = [];
		let index = sending.step + 1;
		while (steps[index]?.when && !steps[index]!.when!(data)) events.push({ state: sending.state, event: `skipped ${steps[index++]!.name}` });
		const next = steps[index];
		if (!next) {
			events.push({ state: "completed", event: "completed" });
			return { changes: { step: index, status: "completed", state: "completed" }, events };
		}
		if (next.await && (!next.await.mayWait || next.await.mayWait(data))) return null;
		events.push({ state: forwardState(next.name), event: `sent ${next.name}` });
		const completedSteps = sending.completedSteps.includes(next.name) ? sending.completedSteps : [...sending.completedSteps, next.name];
		return { changes: { step: index, stepStatus: "started", state: forwardState(next.name), attempts: 1, completedSteps }, events, next };
	}

	/**
	 * Records what a call's answer changes. When the version moved only because an event was
	 * delivered meanwhile (the saga still at this step, sent, same attempt), the change is made
	 * on the newer record: the event is kept, nothing is lost.
	 */
	private async afterCall(sending: SagaRecord, build: (current: SagaRecord) => { changes: Partial<SagaRecord>; event: string; detail?: unknown; also?: Array<{ state: string; event: string }> }): Promise<SagaRecord | null> {
		const first = build(sending);
		const next = await this.transition(sending, first.changes, first.event, first.detail, { quiet: true, also: first.also });
		if (next) return next;
		const current = await this.rebase(sending);
		if (current === sending) {
			this.log("warn", sending, `version ${sending.version} moved on; leaving the saga to whoever moved it`);
			return null;
		}
		const again = build(current);
		return this.transition(current, again.changes, again.event, again.detail, { also: again.also });
	}

	/** The stored record when it differs from `sending` only by an event delivered meanwhile, else `sending`. */
	private async rebase(sending: SagaRecord): Promise<SagaRecord> {
		if (!sending.wait || sending.wait.received) return sending;
		const current = await this.store.get(sending.id);
		const onlyAnEvent = current && current.version > sending.version && current.status === sending.status && current.step === sending.step && current.stepStatus === "started" && current.attempts === sending.attempts && !!current.wait?.received;
		return onlyAnEvent ? current : sending;
	}

	/** The wait of a waiting step ends with its event, a failing event, or the deadline. */
	private async endWait(rec: SagaRecord, step: StepDefinition<any>): Promise<SagaRecord | null> {
		const wait = rec.wait!;
		const received = wait.received;
		let next: SagaRecord | null;
		if (received && wait.events.includes(received.event)) {
			const data = step.await?.onEvent ? step.await.onEvent(rec.data, received.payload) : rec.data;
			next = await this.transition(rec, { data, step: rec.step + 1, stepStatus: "done", attempts: 0, wait: undefined }, `${step.name} done: ${received.event}`);
		} else if (received || (wait.until !== undefined && wait.until <= this.clock.now())) {
			const failure: Failure = received ? { step: step.name, ...eventFailure(step, received.event, received.payload) } : { step: step.name, message: `No ${wait.events.join(" / ")} within the deadline`, type: "DEADLINE_PASSED" };
			this.log("info", rec, `${step.name} failed: ${failure.message}; compensating`);
			next = await this.transition(rec, { status: "compensating", failure, attempts: 0, nextAttemptAt: undefined, wait: undefined }, received ? `${received.event}: ${step.name} failed` : "deadline passed", failure);
		} else {
			return rec;
		}
		if (next) {
			await this.store.clearWait(rec.id, wait.keys);
			await this.store.clearDeadline(rec.id);
		}
		return next;
	}

	/** A step failed: retry within its budget, compensate, or (after the pivot) retry until it succeeds or park. */
	private async stepFailed(sent: SagaRecord, step: StepDefinition<any>, err: any): Promise<SagaRecord | null> {
		const sending = await this.rebase(sent);
		const failure: Failure = { step: step.name, message: err?.message ?? String(err), type: typeof err?.type === "string" ? err.type : undefined, code: typeof err?.code === "number" ? err.code : undefined };
		const budget = step.retry ?? this.defaults.retry;
		if (step.retriable) {
			if (isRefusal(err)) {
				// Refused after the point of no return: undoing is not an option, asking again gets the same answer.
				const reason = `${step.invoke.name} refused after the point of no return: ${failure.message}`;
				this.log("error", sending, `parked: ${reason}`);
				return this.transition(sending, { status: "parked", state: "parked", parkedReason: reason }, "parked", { reason, type: failure.type });
			}
			const delay = Math.min(MAX_BACKOFF_MS, budget.backoffMs * 2 ** Math.min(20, sending.attempts - 1));
			this.log("warn", sending, `${step.name} failed (${failure.message}); past the pivot, so it retries until it succeeds: next in ${delay} ms`);
			return this.retryLater(sending, delay, `${step.name} failed, retry scheduled`, failure);
		}
		if (!isRefusal(err) && sending.attempts < budget.attempts) {
			const delay = budget.backoffMs * 2 ** (sending.attempts - 1);
			this.log("warn", sending, `${step.name} failed (${failure.message}); attempt ${sending.attempts + 1} of ${budget.attempts} in ${delay} ms`);
			return this.retryLater(sending, delay, `${step.name} failed, retry scheduled`, failure);
		}
		this.log(isRefusal(err) ? "info" : "warn", sending, `${step.name} failed: ${failure.message}; compensating`);
		const next = await this.transition(sending, { status: "compensating", failure, attempts: 0, nextAttemptAt: undefined, wait: undefined }, `${step.name} failed`, failure);
		if (next && sending.wait) await this.store.clearWait(sending.id, sending.wait.keys);
		return next;
	}

	private async compensateNext(rec: SagaRecord): Promise<SagaRecord | null> {
		const def = this.definition(rec.type);
		const pending = [...rec.completedSteps].reverse().find(name => def.stepNamed(name)?.compensate && !rec.compensatedSteps.includes(name));
		if (!pending) return this.transition(rec, { status: "compensated", state: "compensated", attempts: 0 }, "compensated");
		const step = def.stepNamed(pending)!;

		const sending = await this.transition(rec, { state: compensationState(step.name), attempts: rec.attempts + 1, nextAttemptAt: undefined }, `compensating ${step.name}`);
		if (!sending) return null;
		if (rec.nextAttemptAt) await this.store.clearDeadline(rec.id);
		const failure = sending.failure ?? { step: step.name, message: "unknown" };
		const sentAt = this.clock.now();
		try {
			const params = step.compensateParams ? step.compensateParams(sending.data, failure) : step.params(sending.data);
			this.opts.crashPoint?.(`${rec.type}:${step.name}:compensate:before`);
			await this.opts.invoke(step.compensate!.name, { ...params, idempotencyKey: `${rec.id}:${step.name}:compensate` }, this.callOptions(sending, step.name, step.timeoutMs));
			this.tell(l => l.step?.(sending, step.name, "compensate", "ok", this.clock.now() - sentAt));
			const compensated = await this.transition(sending, { compensatedSteps: [...sending.compensatedSteps, step.name], attempts: 0 }, `${step.name} compensated`);
			if (compensated) this.opts.crashPoint?.(`${rec.type}:${step.name}:compensate:after`);
			return compensated;
		} catch (err: any) {
			this.tell(l => l.step?.(sending, step.name, "compensate", "failed", this.clock.now() - sentAt));
			const reason = `${step.compensate!.name} failed: ${err?.message ?? err}`;
			// A refused compensation will be refused again: an operator has to look.
			if (isRefusal(err) || sending.attempts >= this.defaults.parkAfterCompensationAttempts) {
				this.log("error", sending, `parked after ${sending.attempts} attempt(s): ${reason}`);
				return this.transition(sending, { status: "parked", state: "parked", parkedReason: reason }, "parked", { reason });
			}
			const delay = Math.min(MAX_BACKOFF_MS, this.defaults.compensationBackoffMs * 2 ** (sending.attempts - 1));
			this.log("warn", sending, `${reason}; retry in ${delay} ms`);
			return this.retryLater(sending, delay, `${step.name} compensation failed, retry scheduled`, { reason });
		}
	}

	// --- Plumbing ----------------------------------------------------------------------------

	/** Records when the next attempt is due, and a deadline in the store so any replica fires it if this one dies. */
	private async retryLater(rec: SagaRecord, delayMs: number, event: string, detail: object): Promise<SagaRecord | null> {
		const at = this.clock.now() + delayMs;
		const next = await this.transition(rec, { nextAttemptAt: at }, event, { ...detail, retryInMs: delayMs });
		if (next) await this.store.scheduleDeadline(rec.id, at);
		return next;
	}

	private async announce(rec: SagaRecord): Promise<SagaRecord | null> {
		try {
			await this.opts.onFinished?.(rec);
		} catch (err) {
			this.log("warn", rec, `announcing the outcome failed (recovery tries again): ${(err as Error)?.message}`);
			return rec;
		}
		return this.transition(rec, { announced: true }, "announced");
	}

	/**
	 * One compare-and-set: the record with `changes`, the next version and a history entry; null
	 * when the version moved. A saga this replica drives is written only while no other replica
	 * holds its lease, which the same write extends (or takes again, when it lapsed unclaimed);
	 * `unleased` writes (an event handed over, an operator) need no lease.
	 */
	private async transition(rec: SagaRecord, changes: Partial<SagaRecord>, event: string, detail?: unknown, opts: { quiet?: boolean; unleased?: boolean; also?: Array<{ state: string; event: string }> } = {}): Promise<SagaRecord | null> {
		const at = this.iso();
		const next: SagaRecord = { ...rec, ...changes, version: rec.version + 1, updatedAt: at };
		// With `also` (what the same write records next), `event` happened in the state the saga was in.
		const entry = { at, state: opts.also ? rec.state : next.state, event, ...(detail === undefined ? {} : { detail }) };
		next.history = [...rec.history, entry, ...(opts.also ?? []).map(e => ({ at, ...e }))];
		const lease = !opts.unleased && this.driving.has(rec.id) ? { owner: this.opts.owner, ttlMs: this.leaseMs } : undefined;
		const writing = Date.now();
		if (!(await this.store.compareAndSet(next, rec.version, lease))) {
			if (!opts.quiet) this.log("warn", rec, `version ${rec.version} moved on${lease ? " or the lease was lost" : ""}; leaving the saga to whoever moved it`);
			return null;
		}
		if (lease && this.leaseExtendedAt.has(rec.id)) this.leaseExtendedAt.set(rec.id, writing);
		if (changes.status && changes.status !== rec.status) {
			this.log("info", next, next.history[next.history.length - 1]!.event);
			if (TERMINAL.has(next.status)) this.tell(l => l.finished?.(next));
		}
		this.changes.emit(rec.id, next);
		return next;
	}

	private async operatorTransition(rec: SagaRecord, changes: Partial<SagaRecord>, event: string): Promise<SagaRecord> {
		const next = await this.transition(rec, changes, event, undefined, { unleased: true });
		if (!next) throw new SagaOperatorError("The saga changed meanwhile; try again", 409, "INVALID_TRANSITION");
		await this.store.clearDeadline(rec.id);
		return (await this.run(rec.id)) ?? next;
	}

	private callOptions(rec: SagaRecord, step: string, timeout: number | undefined) {
		return { meta: { correlationId: rec.correlationId, sagaId: rec.id, step }, timeout };
	}

	/** Waits, unless the engine stops meanwhile (then false). */
	private pause(ms: number): Promise<boolean> {
		return this.clock.sleep(ms, this.abort.signal).then(
			() => true,
			() => false
		);
	}

	/** Tells the listener, if any; a listener's error never disturbs a saga. */
	private tell(fn: (l: SagaListener) => void) {
		if (!this.opts.listener) return;
		try {
			fn(this.opts.listener);
		} catch (err) {
			this.logger.warn("Saga listener failed", err);
		}
	}

	private iso(): string {
		return new Date(this.clock.now()).toISOString();
	}

	/** Resolves once this engine drives no saga (tests: the engine has done what it can). */
	async idle(): Promise<void> {
		while (this.running.size > 0) await Promise.allSettled([...this.running]);
	}

	/** Whether this engine is driving any saga right now. */
	get busy(): boolean {
		return this.running.size > 0 || this.driving.size > 0;
	}

	private get maxInProcessWaitMs() {
		return this.opts.maxInProcessWaitMs ?? 5000;
	}

	private background(id: string) {
		const p = this.run(id)
			.catch(err => this.logger.error(`[saga ${id}] could not be driven`, err))
			.finally(() => this.running.delete(p));
		this.running.add(p);
	}

	private definition(type: string): SagaDefinition<any> {
		const d = this.definitions.get(type);
		if (!d) throw new Error(`No saga definition '${type}'`);
		return d;
	}

	private async mustGet(id: string): Promise<SagaRecord> {
		const rec = await this.store.get(id);
		if (!rec) throw new SagaOperatorError(`Saga ${id} not found`, 404, "NOT_FOUND");
		return rec;
	}

	private log(level: keyof SagaLogger, rec: SagaRecord, message: string) {
		this.logger[level](`[saga ${rec.type} ${rec.id}] ${rec.state}: ${message}`, { sagaId: rec.id, state: rec.state, correlationId: rec.correlationId });
	}
}

/** A waiting step still waiting: no event kept, deadline not passed. */
function isWaiting(rec: SagaRecord, now: number): boolean {
	const wait: SagaWait | undefined = rec.wait;
	return rec.status === "running" && rec.stepStatus === "waiting" && !!wait && !wait.received && (wait.until === undefined || wait.until > now);
}

function eventFailure(step: StepDefinition<any>, event: string, payload: any): { message: string; type?: string } {
	if (step.await?.failure) return step.await.failure(payload);
	const message = typeof payload?.reason === "string" ? payload.reason : typeof payload?.message === "string" ? payload.message : event;
	return { message, type: typeof payload?.type === "string" ? payload.type : undefined };
}
