/**
 * Prints the top functions by self time of each V8 CPU profile given (the `.cpuprofile` files
 * `BENCH_CPU_PROF=<dir> npm run bench` writes): `npx tsx bench/cpuprofile-top.ts [-n 15] <files…>`.
 * Self time of a function = the samples whose innermost frame is that function, summed over
 * every node of the call tree with the same function name, file and line.
 * `--window <file>` keeps only the samples inside a time window (two monotonic microsecond stamps,
 * as the bench writes to `<dir>/saturation-r<replicas>.window`): the saturation phase alone,
 * without start-up and preparation.
 * `--ours` adds, per profile, our own functions (not node_modules) by *inclusive* time: the samples
 * with that function anywhere on the stack — which of our code paths the CPU is spent under.
 */
import { readFileSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
	id: number;
	children?: number[];
	callFrame: { functionName: string; url: string; lineNumber: number };
	hitCount?: number;
}
interface Profile {
	nodes: ProfileNode[];
	startTime: number;
	endTime: number;
	samples?: number[];
	timeDeltas?: number[];
}

const args = process.argv.slice(2);
let top = 15;
const nAt = args.indexOf("-n");
if (nAt >= 0) {
	top = Number(args[nAt + 1]);
	args.splice(nAt, 2);
}
const ours = args.includes("--ours");
if (ours) args.splice(args.indexOf("--ours"), 1);
let window: [number, number] | null = null;
const wAt = args.indexOf("--window");
if (wAt >= 0) {
	const [from, to] = readFileSync(args[wAt + 1]!, "utf8").trim().split(/\s+/).map(Number);
	window = [from!, to!];
	args.splice(wAt, 2);
}

/** Where a frame comes from, short: node_modules/<package>, our own file, or node's internals. */
function where(url: string): string {
	if (!url) return "";
	const nm = url.lastIndexOf("node_modules/");
	if (nm >= 0) return url.slice(nm + "node_modules/".length).split("/").slice(0, url.slice(nm).includes("/@") ? 3 : 2).join("/");
	return url.replace(/^file:\/\//, "").replace(process.cwd() + "/", "");
}

for (const file of args) {
	const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
	const byId = new Map(p.nodes.map(n => [n.id, n]));
	// Time per node from the sample timeline (more exact than hitCount × interval).
	const selfUs = new Map<number, number>();
	const samples = p.samples ?? [];
	const deltas = p.timeDeltas ?? [];
	let at = p.startTime;
	for (let i = 0; i < samples.length; i++) {
		at += deltas[i] ?? 0;
		if (window && (at < window[0] || at > window[1])) continue;
		const dt = deltas[i + 1] ?? 0;
		selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + dt);
	}
	const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
	let idle = 0;
	const byFn = new Map<string, number>();
	const byPlace = new Map<string, number>();
	for (const [id, us] of selfUs) {
		const f = byId.get(id)!.callFrame;
		if (f.functionName === "(idle)") {
			idle += us;
			continue;
		}
		const key = `${f.functionName || "(anonymous)"}  ${where(f.url)}${f.url ? `:${f.lineNumber + 1}` : ""}`;
		byFn.set(key, (byFn.get(key) ?? 0) + us);
		const place = where(f.url) || (f.functionName.startsWith("(") ? f.functionName : "(native)");
		byPlace.set(place, (byPlace.get(place) ?? 0) + us);
	}
	const busy = total - idle;
	console.log(`\n${path.basename(file)}: ${(total / 1e6).toFixed(1)} s profiled, ${(busy / 1e6).toFixed(2)} s on CPU (not idle)`);
	const rows = [...byFn.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
	for (const [k, us] of rows) console.log(`  ${((us / busy) * 100).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
	const places = [...byPlace.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8);
	console.log(`  by package or file: ${places.map(([k, us]) => `${k} ${((us / busy) * 100).toFixed(0)} %`).join(", ")}`);
	if (ours) {
		const parent = new Map<number, number>();
		for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
		const inclusive = new Map<string, number>();
		for (const [id, us] of selfUs) {
			if (byId.get(id)!.callFrame.functionName === "(idle)") continue;
			const seen = new Set<string>();
			for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
				const f = byId.get(at)!.callFrame;
				if (!f.url || f.url.includes("node_modules/") || f.url.startsWith("node:")) continue;
				seen.add(`${f.functionName || "(anonymous)"}  ${where(f.url)}:${f.lineNumber + 1}`);
			}
			for (const k of seen) inclusive.set(k, (inclusive.get(k) ?? 0) + us);
		}
		console.log("  our functions, inclusive:");
		for (const [k, us] of [...inclusive.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${((us / busy) * 100).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
	}
}
