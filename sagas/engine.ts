/**
 * Runs saga definitions. Every change of a saga is a compare-and-set on its version in the
 * store, made before a step is sent and after its answer, so a crash at any point leaves a
 * record from which any replica can go on: a step recorded as started is sent again with the
 * same idempotency key (`<sagaId>:<step>`), and the participant answers as it did the first time.
 *
 * Forward steps retry with backoff within their budget, then the saga compensates. A refusal
 * (4xx) compensates at once. Compensations run in reverse for every step that was sent, retry
 * until they succeed, and after too many failures park the saga for an operator.
 */
import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import { Errors } from "moleculer";
import { compensationState, Failure, forwardState, SagaDefinition, StepDefinition } from "./definition";
import { SagaRecord, SagaStore, TERMINAL } from "./store";

export type Invoke = (action: string, params: Record<string, unknown>, opts: { meta: { correlationId?: string; sagaId: string; step: string }; timeout?: number }) => Promise<any>;

interface Logger {
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

export interface EngineOptions {
	store: SagaStore;
	invoke: Invoke;
	definitions: SagaDefinition<any>[];
	/** Who this replica is; leases carry it. */
	owner: string;
	leaseMs?: number;
	logger?: Logger;
	retry?: { attempts: number; backoffMs: number };
	compensationBackoffMs?: number;
	parkAfterCompensationAttempts?: number;
	/** A pause before each step (demos, crash tests). */
	stepDelayMs?: number;
	/** Retries due sooner than this wait in-process; later ones become deadlines in the store. */
	maxInProcessWaitMs?: number;
	/** Called once a saga is completed or compensated (again after a crash: make it idempotent). */
	onFinished?: (rec: SagaRecord) => Promise<void>;
}

/** A refusal is an answer: retrying it would only get the same answer. */
export function isRefusal(err: any): boolean {
	if (err?.retryable === true) return false;
	return typeof err?.code === "number" && err.code >= 400 && err.code < 500;
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

export class SagaEngine {
	private definitions = new Map<string, SagaDefinition<any>>();
	private opts: Required<Omit<EngineOptions, "onFinished">> & Pick<EngineOptions, "onFinished">;
	private changes = new EventEmitter();
	private recoveryTimer: NodeJS.Timeout | null = null;
	private running = new Set<Promise<unknown>>();
	/** Sagas this replica is driving right now: recovery leaves them alone. */
	private driving = new Set<string>();
	private stopped = false;

	constructor(options: EngineOptions) {
		this.opts = {
			leaseMs: 15_000,
			logger: console,
			retry: { attempts: 3, backoffMs: 200 },
			compensationBackoffMs: 200,
			parkAfterCompensationAttempts: 20,
			stepDelayMs: 0,
			maxInProcessWaitMs: 5000,
			...options
		};
		for (const d of options.definitions) this.definitions.set(d.name, d);
		this.changes.setMaxListeners(0);
	}

	/** Creates the saga and starts driving it in the background. */
	async start<D>(type: string, data: D, opts: { sagaId?: string; correlationId?: string } = {}): Promise<SagaRecord<D>> {
		const def = this.definition(type);
		const now = new Date().toISOString();
		const rec: SagaRecord<D> = {
			id: opts.sagaId ?? randomUUID(),
			type,
			state: "started",
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
			history: [{ at: now, state: "started", event: "started", detail: { steps: def.steps.map(s => s.name) } }],
			createdAt: now,
			updatedAt: now
		};
		if (!(await this.opts.store.create(rec))) throw new Error(`Saga ${rec.id} exists already`);
		this.log("info", rec, "started");
		this.background(rec.id);
		return rec;
	}

	/** Drives the saga as far as it can go now; another replica's lease means hands off. */
	async run(id: string): Promise<SagaRecord | null> {
		const { store, owner, leaseMs } = this.opts;
		if (this.driving.has(id) || !(await store.acquireLease(id, owner, leaseMs))) return store.get(id);
		this.driving.add(id);
		const renew = setInterval(() => void store.acquireLease(id, owner, leaseMs).catch(() => undefined), Math.max(200, leaseMs / 3));
		try {
			await store.clearDeadline(id);
			let rec = await store.get(id);
			while (rec && !this.stopped) {
				if (TERMINAL.has(rec.status)) {
					if (!rec.announced && rec.status !== "parked") rec = await this.announce(rec);
					break;
				}
				if (rec.nextAttemptAt && rec.nextAttemptAt > Date.now()) {
					const wait = rec.nextAttemptAt - Date.now();
					if (wait > this.opts.maxInProcessWaitMs) {
						await store.scheduleDeadline(id, rec.nextAttemptAt);
						break;
					}
					await sleep(wait);
				}
				const next = rec.status === "running" ? await this.forward(rec) : await this.compensateNext(rec);
				if (!next) break; // the version moved: another replica has it
				rec = next;
			}
			return rec;
		} finally {
			clearInterval(renew);
			this.driving.delete(id);
			await store.releaseLease(id, owner).catch(() => undefined);
		}
	}

	/** Resolves when the saga is terminal, or at the timeout with its current record. */
	async waitFor(id: string, opts: { timeoutMs: number }): Promise<SagaRecord | null> {
		const until = Date.now() + opts.timeoutMs;
		for (;;) {
			const rec = await this.opts.store.get(id);
			if (!rec || TERMINAL.has(rec.status) || Date.now() >= until) return rec;
			await new Promise<void>(resolve => {
				const t = setTimeout(done, Math.min(100, Math.max(0, until - Date.now())));
				function done() {
					clearTimeout(t);
					resolve();
				}
				this.changes.once(id, done);
			});
		}
	}

	/** Resumes every saga whose driver is gone and fires due deadlines. Answers how many it took up. */
	async recover(): Promise<number> {
		const { store } = this.opts;
		const ids = new Set([...(await store.dueDeadlines(Date.now(), 500)), ...(await store.listUnfinished())]);
		let resumed = 0;
		for (const id of ids) {
			if (this.driving.has(id)) continue;
			const rec = await store.get(id);
			if (!rec || (rec.nextAttemptAt && rec.nextAttemptAt > Date.now() + this.opts.maxInProcessWaitMs)) continue;
			if (await store.acquireLease(id, this.opts.owner, this.opts.leaseMs)) {
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
				if (n > 0) this.opts.logger.info(`Resumed ${n} saga(s) left by another replica or waiting for a retry`);
			} catch (err) {
				this.opts.logger.warn("Saga recovery failed", err);
			}
			if (!this.stopped) this.recoveryTimer = setTimeout(tick, intervalMs);
		};
		this.recoveryTimer = setTimeout(tick, 0);
	}

	async stop(): Promise<void> {
		this.stopped = true;
		if (this.recoveryTimer) clearTimeout(this.recoveryTimer);
		await Promise.allSettled([...this.running]);
	}

	/** Operator: resume a parked saga where it stopped. */
	async retry(id: string): Promise<SagaRecord> {
		const rec = await this.mustGet(id);
		if (rec.status !== "parked") throw new Errors.MoleculerClientError(`Saga is ${rec.status}, not parked`, 409, "INVALID_TRANSITION");
		const status = rec.failure ? "compensating" : "running";
		const next = await this.transition(rec, { status, attempts: 0, parkedReason: undefined, nextAttemptAt: undefined }, "retried by an operator");
		if (!next) throw new Errors.MoleculerClientError("The saga changed meanwhile; try again", 409, "INVALID_TRANSITION");
		return (await this.run(id)) ?? next;
	}

	/** Operator: give up on a saga and undo what it did. */
	async compensate(id: string): Promise<SagaRecord> {
		const rec = await this.mustGet(id);
		if (rec.status === "completed" || rec.status === "compensated") throw new Errors.MoleculerClientError(`Saga is ${rec.status}`, 409, "INVALID_TRANSITION");
		const failure: Failure = rec.failure ?? { step: this.definition(rec.type).steps[rec.step]?.name ?? "operator", message: "Compensation requested by an operator", type: "OPERATOR_REQUEST" };
		const next = await this.transition(rec, { status: "compensating", failure, attempts: 0, parkedReason: undefined, nextAttemptAt: undefined }, "compensation requested by an operator");
		if (!next) throw new Errors.MoleculerClientError("The saga changed meanwhile; try again", 409, "INVALID_TRANSITION");
		return (await this.run(id)) ?? next;
	}

	// --- Forward ---------------------------------------------------------------------------

	private async forward(rec: SagaRecord): Promise<SagaRecord | null> {
		const def = this.definition(rec.type);
		const step = def.steps[rec.step];
		if (!step) return this.transition(rec, { status: "completed", state: "completed", stepStatus: "pending" }, "completed");
		if (step.when && !step.when(rec.data)) return this.transition(rec, { step: rec.step + 1, stepStatus: "pending", attempts: 0 }, `skipped ${step.name}`);

		if (rec.stepStatus === "pending" && this.opts.stepDelayMs > 0) await sleep(this.opts.stepDelayMs);
		const sending = await this.transition(
			rec,
			{
				state: forwardState(step.name),
				stepStatus: "started",
				attempts: rec.attempts + 1,
				nextAttemptAt: undefined,
				completedSteps: rec.completedSteps.includes(step.name) ? rec.completedSteps : [...rec.completedSteps, step.name]
			},
			rec.stepStatus === "started" ? `re-sent ${step.name}` : `sent ${step.name}`
		);
		if (!sending) return null;

		try {
			const reply = await this.opts.invoke(step.invoke, { ...step.params(sending.data), idempotencyKey: `${rec.id}:${step.name}` }, this.callOptions(sending, step));
			const data = step.onReply ? step.onReply(sending.data, reply) : sending.data;
			return this.transition(sending, { data, step: sending.step + 1, stepStatus: "pending", attempts: 0 }, `${step.name} done`);
		} catch (err: any) {
			const failure: Failure = { step: step.name, message: err?.message ?? String(err), type: err?.type, code: err?.code };
			const budget = step.retry ?? this.opts.retry;
			if (!isRefusal(err) && sending.attempts < budget.attempts) {
				const delay = budget.backoffMs * 2 ** (sending.attempts - 1);
				this.log("warn", sending, `${step.name} failed (${failure.message}); retry in ${delay} ms`);
				return this.transition(sending, { nextAttemptAt: Date.now() + delay }, `${step.name} failed, retry scheduled`, failure);
			}
			this.log(isRefusal(err) ? "info" : "warn", sending, `${step.name} failed: ${failure.message}; compensating`);
			return this.transition(sending, { status: "compensating", failure, attempts: 0, nextAttemptAt: undefined }, `${step.name} failed`, failure);
		}
	}

	// --- Compensation ------------------------------------------------------------------------

	private async compensateNext(rec: SagaRecord): Promise<SagaRecord | null> {
		const def = this.definition(rec.type);
		const pending = [...rec.completedSteps].reverse().find(name => def.stepNamed(name)?.compensate && !rec.compensatedSteps.includes(name));
		if (!pending) return this.transition(rec, { status: "compensated", state: "compensated", attempts: 0 }, "compensated");
		const step = def.stepNamed(pending)!;

		const sending = await this.transition(rec, { state: compensationState(step.name), attempts: rec.attempts + 1, nextAttemptAt: undefined }, `compensating ${step.name}`);
		if (!sending) return null;
		const failure = sending.failure ?? { step: step.name, message: "unknown" };
		try {
			const params = step.compensateParams ? step.compensateParams(sending.data, failure) : step.params(sending.data);
			await this.opts.invoke(step.compensate!, { ...params, idempotencyKey: `${rec.id}:${step.name}:compensate` }, this.callOptions(sending, step));
			return this.transition(sending, { compensatedSteps: [...sending.compensatedSteps, step.name], attempts: 0 }, `${step.name} compensated`);
		} catch (err: any) {
			const reason = `${step.compensate} failed: ${err?.message ?? err}`;
			// A refused compensation will be refused again; an operator has to look.
			if (isRefusal(err) || sending.attempts >= this.opts.parkAfterCompensationAttempts) {
				this.log("error", sending, `parked: ${reason}`);
				return this.transition(sending, { status: "parked", state: "parked", parkedReason: reason }, "parked", { reason });
			}
			const delay = Math.min(30_000, this.opts.compensationBackoffMs * 2 ** (sending.attempts - 1));
			this.log("warn", sending, `${reason}; retry in ${delay} ms`);
			return this.transition(sending, { nextAttemptAt: Date.now() + delay }, `${step.name} compensation failed, retry scheduled`, { reason });
		}
	}

	// --- Plumbing ----------------------------------------------------------------------------

	private async announce(rec: SagaRecord): Promise<SagaRecord | null> {
		if (this.opts.onFinished) {
			try {
				await this.opts.onFinished(rec);
			} catch (err) {
				// Left unannounced: recovery tries again.
				this.log("warn", rec, `announcing the outcome failed: ${(err as Error).message}`);
				return rec;
			}
		}
		return this.transition(rec, { announced: true }, "announced");
	}

	/** One compare-and-set: the record with `changes`, one more version and a history entry. */
	private async transition(rec: SagaRecord, changes: Partial<SagaRecord>, event: string, detail?: unknown): Promise<SagaRecord | null> {
		const at = new Date().toISOString();
		const next: SagaRecord = { ...rec, ...changes, version: rec.version + 1, updatedAt: at };
		next.history = [...rec.history, { at, state: next.state, event, ...(detail === undefined ? {} : { detail }) }];
		if (!(await this.opts.store.compareAndSet(next, rec.version))) {
			this.log("warn", rec, `version ${rec.version} moved on; leaving the saga to whoever moved it`);
			return null;
		}
		if (changes.status && changes.status !== rec.status) this.log("info", next, event);
		this.changes.emit(rec.id);
		return next;
	}

	private callOptions(rec: SagaRecord, step: StepDefinition<any>) {
		return { meta: { correlationId: rec.correlationId, sagaId: rec.id, step: step.name }, timeout: step.timeoutMs };
	}

	private background(id: string) {
		const p = this.run(id)
			.catch(err => this.opts.logger.error(`Saga ${id} could not be driven`, err))
			.finally(() => this.running.delete(p));
		this.running.add(p);
	}

	private definition(type: string): SagaDefinition<any> {
		const d = this.definitions.get(type);
		if (!d) throw new Error(`No saga definition '${type}'`);
		return d;
	}

	private async mustGet(id: string): Promise<SagaRecord> {
		const rec = await this.opts.store.get(id);
		if (!rec) throw new Errors.MoleculerClientError("Saga not found", 404, "NOT_FOUND", { id });
		return rec;
	}

	private log(level: "info" | "warn" | "error", rec: SagaRecord, message: string) {
		this.opts.logger[level](`[saga ${rec.type} ${rec.id}] ${rec.state}: ${message}`, rec.correlationId ? `(correlation ${rec.correlationId})` : "");
	}
}
