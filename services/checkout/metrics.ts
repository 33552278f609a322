/**
 * The saga engine's metrics, kept in Moleculer's registry (the engine itself knows nothing of
 * Moleculer: it tells a SagaListener). `GET /metrics` shows them as
 * `saga_started_total{type}`, `saga_completed_total{type}`, `saga_compensated_total{type}`,
 * `saga_parked_total{type}` and `saga_step_duration{type,step,phase,outcome}` (ms), and what the
 * reconciler did: `saga_reconciler_actions_total{action}` (finished, compensated,
 * cart_checked_out, cart_unlocked, failed).
 */
import type { ServiceBroker } from "moleculer";
import type { SagaListener } from "../../sagas";
import type { ReconcileReport } from "./reconciler";

const COUNTERS = {
	started: "saga.started.total",
	completed: "saga.completed.total",
	compensated: "saga.compensated.total",
	parked: "saga.parked.total"
} as const;
const STEP_DURATION = "saga.step.duration";

function ensure(broker: ServiceBroker, def: { type: string; name: string; labelNames: string[]; description: string; unit?: string; buckets?: number[] }) {
	if (!broker.metrics.isEnabled() || broker.metrics.getMetric(def.name)) return;
	broker.metrics.register(def as any);
}

export function sagaMetrics(broker: ServiceBroker): SagaListener {
	for (const [what, name] of Object.entries(COUNTERS)) {
		ensure(broker, { type: "counter", name, labelNames: ["type"], description: `Sagas ${what}, per saga type` });
	}
	ensure(broker, {
		type: "histogram", name: STEP_DURATION, labelNames: ["type", "step", "phase", "outcome"], unit: "millisecond",
		description: "How long a saga step's call took (phase forward or compensate; outcome ok or failed)",
		buckets: [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 15000]
	});
	return {
		started: rec => broker.metrics.increment(COUNTERS.started, { type: rec.type }),
		finished: rec => {
			const name = COUNTERS[rec.status as "completed" | "compensated" | "parked"];
			if (name) broker.metrics.increment(name, { type: rec.type });
		},
		step: (rec, step, phase, outcome, ms) => broker.metrics.observe(STEP_DURATION, ms, { type: rec.type, step, phase, outcome })
	};
}

const RECONCILER_ACTIONS = "saga.reconciler.actions.total";
const REPORTED: Array<[keyof ReconcileReport, string]> = [
	["finished", "finished"], ["compensated", "compensated"], ["cartsCheckedOut", "cart_checked_out"], ["cartsUnlocked", "cart_unlocked"], ["failed", "failed"]
];

/** Counts what each reconciler pass did, per kind of action. */
export function reconcilerMetrics(broker: ServiceBroker): (report: ReconcileReport) => void {
	ensure(broker, { type: "counter", name: RECONCILER_ACTIONS, labelNames: ["action"], description: "What the reconciler did to orders whose saga was lost, per kind of action" });
	for (const [, action] of REPORTED) if (broker.metrics.isEnabled()) broker.metrics.increment(RECONCILER_ACTIONS, { action }, 0);
	return report => {
		if (!broker.metrics.isEnabled()) return;
		for (const [field, action] of REPORTED) {
			const n = Number(report[field]);
			if (n > 0) broker.metrics.increment(RECONCILER_ACTIONS, { action }, n);
		}
	};
}
