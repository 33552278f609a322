/**
 * The saga DSL: a saga is a named list of steps, each with the action it invokes, how its
 * params are built from the saga's data, what its reply adds to the data, and the action that
 * undoes it. Reading a definition top to bottom reads the business process.
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
	compensateParams?: (data: D, failure: Failure) => Record<string, unknown>;
	/** The step runs only when this holds. */
	when?: (data: D) => boolean;
	/** Attempts and first backoff of this step when it fails for a reason worth retrying. */
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

	step(name: string, options: StepOptions<D>): SagaDefinition<D> {
		if (this.steps.some(s => s.name === name)) throw new Error(`Saga '${this.name}' already has a step '${name}'`);
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

function words(camel: string): string[] {
	return camel
		.replace(/([a-z0-9])([A-Z])/g, "$1 $2")
		.toLowerCase()
		.split(" ")
		.filter(Boolean);
}

function gerund(verb: string): string {
	if (/[^aeiou]e$/.test(verb) && !verb.endsWith("ee")) return verb.slice(0, -1) + "ing";
	return verb + "ing";
}

/** `reserveStock` → `reserving_stock`. */
export function forwardState(step: string): string {
	const [verb, ...rest] = words(step);
	return [gerund(verb ?? step), ...rest].join("_");
}

/** `reserveStock` → `compensating_reserve_stock`. */
export function compensationState(step: string): string {
	return ["compensating", ...words(step)].join("_");
}
