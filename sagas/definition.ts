/**
 * The saga DSL: a saga is a named list of steps, each with the action it invokes, how its
 * params are built from the saga's data, what its reply adds to the data, and the action that
 * undoes it. Reading a definition top to bottom reads the business process:
 *
 *   saga<PlaceOrderData>("place-order")
 *     .step("lockCart",     { invoke: "carts.lock", params: d => ({ cartId: d.cartId }), compensate: "carts.unlock" })
 *     .step("reserveStock", { invoke: "inventory.reserve", params: …, compensate: "inventory.release" })
 *     .step("confirmOrder", { invoke: "orders.confirm", params: … });
 *
 * The engine derives the state names from the step names (`reserveStock` → `reserving_stock`,
 * its undoing → `compensating_reserve_stock`), so Redis, logs and the REPL use the same words.
 */

/** Why a saga compensates. */
export interface Failure {
	step: string;
	message: string;
	type?: string;
	code?: number;
}

export interface StepOptions<D> {
	/** The action that does the step, e.g. "inventory.reserve". */
	invoke: string;
	/** Its params, built from the saga's data (the engine adds the idempotency key). */
	params: (data: D) => Record<string, unknown>;
	/** What the reply adds to the saga's data. */
	onReply?: (data: D, reply: any) => D;
	/** The action that undoes the step. */
	compensate?: string;
	/** Its params; without it the compensation gets the step's own params. */
	compensateParams?: (data: D, failure: Failure) => Record<string, unknown>;
	/** The step runs only when this holds. */
	when?: (data: D) => boolean;
	/** Attempts and first backoff of this step when it fails for a reason worth retrying (overrides the engine's default). */
	retry?: { attempts: number; backoffMs: number };
	/** How long one call may take. */
	timeoutMs?: number;
}

export interface StepDefinition<D> extends StepOptions<D> {
	name: string;
}

export class SagaDefinition<D> {
	constructor(
		readonly name: string,
		readonly steps: ReadonlyArray<StepDefinition<D>> = []
	) {}

	/** A new definition with one more step at the end. */
	step(name: string, options: StepOptions<D>): SagaDefinition<D> {
		const where = `Saga '${this.name}', step '${name}'`;
		if (!/^[a-z][A-Za-z0-9]*$/.test(name)) throw new Error(`${where}: a step name is one camelCase word, verb first (reserveStock)`);
		if (this.steps.some(s => s.name === name)) throw new Error(`${where}: the saga already has a step of that name`);
		if (options.compensateParams && !options.compensate) throw new Error(`${where}: compensateParams without a compensate action`);
		if (options.retry && !(options.retry.attempts >= 1)) throw new Error(`${where}: retry.attempts must be at least 1`);
		return new SagaDefinition<D>(this.name, [...this.steps, { name, ...options }]);
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
export const TERMINAL_STATES = ["completed", "compensated", "parked"] as const;

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
