/**
 * The saga DSL: a saga is a named list of steps, each with the action it invokes (a typed
 * reference from contracts/actions.ts), how its params are built from the saga's data, what its
 * reply adds to the data, and the action that undoes it. Reading a definition top to bottom
 * reads the business process:
 *
 *   saga<PlaceOrderData>("place-order")
 *     .step("lockCart",     { invoke: Carts.lock, params: d => ({ … }), compensate: Carts.unlock })
 *     .step("reserveStock", { invoke: Inventory.reserve, params: …, compensate: Inventory.release, timeoutMs: 5000 })
 *     .step("authorizePayment", {
 *        invoke: Payments.authorize, params: …, compensate: Payments.void,
 *        await: { event: PaymentEvents.authorized, failOn: PaymentEvents.failed, key: d => d.orderId,
 *                 deadlineMs: () => settings.paymentDeadlineMs, when: (d, reply) => reply.status === "pending" }
 *     })
 *     .pivot()                       // the point of no return: what follows retries until it succeeds
 *     .step("confirmOrder", { invoke: Orders.confirm, params: … });
 *
 * - Steps up to and including the pivot can fail; the saga then undoes, in reverse, every step
 *   it sent. Steps after the pivot have no compensation: a temporary failure is retried until
 *   it succeeds (backoff doubling up to 30 s), a refusal parks the saga for an operator. Nothing
 *   after the pivot ever undoes what came before it.
 * - A waiting step (`await`) sends its command, then waits for an outside event matched by a key
 *   (e.g. the order id) or for its deadline. The success event goes on (`onEvent` adds to the
 *   data); a `failOn` event or the deadline compensates. The wait and its deadline live in the
 *   saga store, so they survive a crash of the process that sent the command.
 * - `timeoutMs` (one call) and `retry` (attempts, first backoff) where a step differs from the
 *   engine's defaults.
 *
 * The engine derives the state names from the step names (`reserveStock` → `reserving_stock`,
 * its undoing → `compensating_reserve_stock`, its wait → `awaiting_reserve_stock`), so Redis,
 * logs and the REPL use the same words.
 */
import type { ActionRef, EventRef } from "../contracts/actions";

/** Why a saga compensates. */
export interface Failure {
	step: string;
	message: string;
	type?: string;
	code?: number;
}

/** The engine adds the idempotency key itself. */
type Params<P> = Omit<P, "idempotencyKey">;

export interface AwaitOptions<D, R, E, F> {
	/** The event that lets the saga go on. */
	event: EventRef<E>;
	/** Events that fail the step (the saga compensates, this step included). */
	failOn?: EventRef<F> | Array<EventRef<F>>;
	/** What matches an event to this saga: the same value as the event's `key` (e.g. the order id). */
	key: (data: D) => string;
	/** How long to wait after the command answered; then the saga compensates (failure type DEADLINE_PASSED). */
	deadlineMs: number | ((data: D) => number);
	/** What the success event adds to the data. */
	onEvent?: (data: D, payload: E) => D;
	/**
	 * Whether this saga may wait here at all, known before the command goes out (a card is
	 * authorized at once, BLIK and PayPal answer later). A saga that may not wait indexes no wait
	 * in the store and takes no event for it. Default: every saga may.
	 */
	mayWait?: (data: D) => boolean;
	/** Wait only when this holds of the reply (BLIK answers "pending"). Default: always. */
	when?: (data: D, reply: R) => boolean;
	/** The failure a failOn event stands for; default: its `reason`/`message` and `type`. */
	failure?: (payload: F) => { message: string; type?: string };
}

export interface StepOptions<D, P, R, CP = P, E = unknown, F = unknown> {
	/** The action that does the step, e.g. `Inventory.reserve`. */
	invoke: ActionRef<P, R>;
	/** Its params, built from the saga's data (the engine adds the idempotency key). */
	params: (data: D) => Params<P>;
	/** What the reply adds to the saga's data. */
	onReply?: (data: D, reply: R) => D;
	/** The action that undoes the step. */
	compensate?: ActionRef<CP, unknown>;
	/** Its params; without it the compensation gets the step's own params. */
	compensateParams?: (data: D, failure: Failure) => Params<CP>;
	/** The step runs only when this holds. */
	when?: (data: D) => boolean;
	/** Attempts and first backoff of this step when it fails for a reason worth retrying (overrides the engine's default; after the pivot only the backoff counts). */
	retry?: { attempts: number; backoffMs: number };
	/** How long one call may take. */
	timeoutMs?: number;
	/** After the command answered, wait for an outside event (or the deadline). */
	await?: AwaitOptions<D, R, E, F>;
	/** This step is the point of no return (same as `.pivot()` right after it). */
	pivot?: boolean;
}

/** A step as the engine sees it (types erased: the definition checked them). */
export interface StepDefinition<D> {
	name: string;
	invoke: ActionRef<any, any>;
	params: (data: D) => Record<string, unknown>;
	onReply?: (data: D, reply: any) => D;
	compensate?: ActionRef<any, unknown>;
	compensateParams?: (data: D, failure: Failure) => Record<string, unknown>;
	when?: (data: D) => boolean;
	retry?: { attempts: number; backoffMs: number };
	timeoutMs?: number;
	await?: {
		event: EventRef<any>;
		failOn: Array<EventRef<any>>;
		key: (data: D) => string;
		deadlineMs: (data: D) => number;
		onEvent?: (data: D, payload: any) => D;
		mayWait?: (data: D) => boolean;
		when?: (data: D, reply: any) => boolean;
		failure?: (payload: any) => { message: string; type?: string };
	};
	pivot: boolean;
	/** After the pivot: retried until it succeeds, never compensated. */
	retriable: boolean;
}

export class SagaDefinition<D> {
	constructor(
		readonly name: string,
		readonly steps: ReadonlyArray<StepDefinition<D>> = []
	) {}

	/** A new definition with one more step at the end. */
	step<P, R, CP = P, E = unknown, F = unknown>(name: string, options: StepOptions<D, P, R, CP, E, F>): SagaDefinition<D> {
		const where = `Saga '${this.name}', step '${name}'`;
		if (!/^[a-z][A-Za-z0-9]*$/.test(name)) throw new Error(`${where}: a step name is one camelCase word, verb first (reserveStock)`);
		if (this.steps.some(s => s.name === name)) throw new Error(`${where}: the saga already has a step of that name`);
		if (options.invoke?.kind !== "action") throw new Error(`${where}: invoke is an action reference from contracts/actions.ts`);
		if (options.compensateParams && !options.compensate) throw new Error(`${where}: compensateParams without a compensate action`);
		if (options.retry && !(options.retry.attempts >= 1)) throw new Error(`${where}: retry.attempts must be at least 1`);
		const retriable = this.pivotIndex >= 0;
		if (retriable && options.compensate) throw new Error(`${where}: a step after the pivot is never compensated; drop its compensate`);
		if (retriable && options.await) throw new Error(`${where}: a waiting step can fail, so it belongs before the pivot`);
		if (options.pivot && retriable) throw new Error(`${where}: the saga already has a pivot`);
		const a = options.await;
		const step: StepDefinition<D> = {
			name,
			invoke: options.invoke,
			params: options.params as (data: D) => Record<string, unknown>,
			onReply: options.onReply,
			compensate: options.compensate,
			compensateParams: options.compensateParams as ((data: D, failure: Failure) => Record<string, unknown>) | undefined,
			when: options.when,
			retry: options.retry,
			timeoutMs: options.timeoutMs,
			await: a && {
				event: a.event,
				failOn: a.failOn === undefined ? [] : Array.isArray(a.failOn) ? a.failOn : [a.failOn],
				key: a.key,
				deadlineMs: typeof a.deadlineMs === "number" ? () => a.deadlineMs as number : a.deadlineMs,
				onEvent: a.onEvent,
				mayWait: a.mayWait,
				when: a.when,
				failure: a.failure
			},
			pivot: options.pivot === true,
			retriable
		};
		return new SagaDefinition<D>(this.name, [...this.steps, step]);
	}

	/** Marks the last step as the point of no return: the steps after it retry until they succeed and never compensate. */
	pivot(): SagaDefinition<D> {
		const last = this.steps[this.steps.length - 1];
		if (!last) throw new Error(`Saga '${this.name}': the pivot follows a step`);
		if (this.pivotIndex >= 0) throw new Error(`Saga '${this.name}': the saga already has a pivot`);
		return new SagaDefinition<D>(this.name, [...this.steps.slice(0, -1), { ...last, pivot: true }]);
	}

	/** Index of the pivot step, -1 without one. */
	get pivotIndex(): number {
		return this.steps.findIndex(s => s.pivot);
	}

	stepNamed(name: string): StepDefinition<D> | undefined {
		return this.steps.find(s => s.name === name);
	}
}

export function saga<D>(name: string): SagaDefinition<D> {
	return new SagaDefinition<D>(name);
}

// --- State names, derived from step names so Redis, logs and the REPL use the same words ---

export const INITIAL_STATE = "started";

function words(camel: string): string[] {
	return camel
		.replace(/([a-z0-9])([A-Z])/g, "$1 $2")
		.toLowerCase()
		.split(" ")
		.filter(Boolean);
}

/** create → creating, reserve → reserving, lock → locking, free → freeing. */
function gerund(verb: string): string {
	return /[^e]e$/.test(verb) ? verb.slice(0, -1) + "ing" : verb + "ing";
}

/** The state of a saga while it runs a step: `reserveStock` → `reserving_stock`. */
export function forwardState(step: string): string {
	const [verb = step, ...rest] = words(step);
	return [gerund(verb), ...rest].join("_");
}

/** The state of a saga while it undoes a step: `reserveStock` → `compensating_reserve_stock`. */
export function compensationState(step: string): string {
	return ["compensating", ...words(step)].join("_");
}

/** The state of a saga while a waiting step waits for its event: `authorizePayment` → `awaiting_authorize_payment`. */
export function waitingState(step: string): string {
	return ["awaiting", ...words(step)].join("_");
}
