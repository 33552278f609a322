/**
 * Prometheus text from the metrics of many nodes (`$node.metrics` of each), one family per
 * name with a `nodeID` label on every sample — as Moleculer's Prometheus reporter renders one
 * node's registry, for the whole cluster at once.
 */
export interface NodeMetric {
	name: string;
	type: string;
	description?: string;
	unit?: string;
	values: Array<{ labels?: Record<string, unknown>; value?: number | string | null; buckets?: Record<string, number>; count?: number; sum?: number }>;
}

const metricName = (name: string) => name.replace(/[^a-zA-Z0-9_:]/g, "_");
const escape = (v: unknown) => String(v).replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const num = (v: unknown) => (v === null || v === undefined || v === "" || Number.isNaN(Number(v)) ? "NaN" : String(Number(v)));

function labels(l: Record<string, unknown>): string {
	const parts = Object.entries(l)
		.filter(([, v]) => v !== undefined && v !== null)
		.map(([k, v]) => `${metricName(k)}="${escape(v)}"`);
	return parts.length ? `{${parts.join(",")}}` : "";
}

export function renderPrometheus(nodes: Array<{ nodeID: string; metrics: NodeMetric[] }>): string {
	const families = new Map<string, { type: string; help: string; lines: string[] }>();
	for (const { nodeID, metrics } of nodes) {
		for (const m of metrics) {
			if (m.name.startsWith("os.datetime") || m.type === "info") continue;
			const name = metricName(m.name);
			const family = families.get(name) ?? { type: m.type, help: m.description || `${m.name}${m.unit ? ` (${m.unit})` : ""}`, lines: [] };
			families.set(name, family);
			for (const v of m.values ?? []) {
				const base = { ...(v.labels ?? {}), nodeID };
				if (m.type === "histogram") {
					for (const [le, n] of Object.entries(v.buckets ?? {})) family.lines.push(`${name}_bucket${labels({ ...base, le })} ${num(n)}`);
					family.lines.push(`${name}_bucket${labels({ ...base, le: "+Inf" })} ${num(v.count)}`);
					family.lines.push(`${name}_sum${labels(base)} ${num(v.sum)}`);
					family.lines.push(`${name}_count${labels(base)} ${num(v.count)}`);
				} else {
					family.lines.push(`${name}${labels(base)} ${num(v.value)}`);
				}
			}
		}
	}
	const out: string[] = [];
	for (const [name, f] of families) {
		if (f.lines.length === 0) continue;
		out.push(`# HELP ${name} ${f.help.replace(/\n/g, " ")}`, `# TYPE ${name} ${f.type === "histogram" || f.type === "counter" ? f.type : "gauge"}`, ...f.lines, "");
	}
	return out.join("\n");
}
