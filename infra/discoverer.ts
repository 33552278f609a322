/**
 * Moleculer's local discoverer, with dead nodes noticed in milliseconds rather than whole seconds.
 *
 * The stock discoverer stamps a node's last heartbeat with `Math.round(process.uptime())` (whole
 * seconds) and looks for silent nodes only every `heartbeatTimeout` seconds, so a 3 s timeout
 * drops a SIGKILLed node 3–7 s after its death (measured 4.1–6.6 s). This one stamps each
 * heartbeat with `Date.now()` and looks every `checkEveryMs`: a node silent for longer than
 * `timeoutMs` leaves the registry (as the stock one does it: `$node.disconnected`, unexpected).
 * With a beat every 1 s ± 0.5 s and a 2.5 s timeout, a killed node is gone 1–3 s after its
 * death. A live node whose event loop stalled past the timeout is dropped too and comes back
 * with its next heartbeat (Moleculer asks it for its INFO again).
 *
 * The CPU figure a heartbeat carries (the REPL's `nodes` shows it) is this process's own CPU
 * use since its last beat, from `process.cpuUsage()`. The stock one samples the whole machine
 * with `os.cpus()` three times per beat, which cost every process 2.5 % of its CPU at a beat
 * a second (the profiles of `npm run bench`); nothing here balances on it (RabbitMQ does).
 */
import { Discoverers } from "moleculer";

export interface PromptDiscovererOptions {
	/** Silence after which a node counts as dead (ms). */
	timeoutMs: number;
	/** How often silent nodes are looked for (ms). */
	checkEveryMs: number;
}

const LocalDiscoverer = (Discoverers as any).Local as new (opts?: unknown) => any;

export class PromptDiscoverer extends LocalDiscoverer {
	/** nodeID → when its last heartbeat arrived (epoch ms), for the nodes available at the last check. */
	private readonly lastSeen = new Map<string, number>();
	private promptTimer: NodeJS.Timeout | null = null;

	constructor(private readonly prompt: PromptDiscovererOptions) {
		super({});
	}

	startHeartbeatTimers() {
		super.startHeartbeatTimers();
		// The stock whole-second check is replaced by ours.
		if (this.checkNodesTimer) clearInterval(this.checkNodesTimer);
		this.checkNodesTimer = null;
		if (this.promptTimer) clearInterval(this.promptTimer);
		this.promptTimer = setInterval(() => this.checkRemoteNodes(), this.prompt.checkEveryMs);
		this.promptTimer.unref();
	}

	stopHeartbeatTimers() {
		super.stopHeartbeatTimers();
		if (this.promptTimer) clearInterval(this.promptTimer);
		this.promptTimer = null;
	}

	private lastCpu = { at: performance.now(), usage: process.cpuUsage() };

	beat() {
		const now = performance.now();
		const usage = process.cpuUsage();
		const usedUs = usage.user - this.lastCpu.usage.user + usage.system - this.lastCpu.usage.system;
		const avg = Math.min(100, (usedUs / 1000 / Math.max(1, now - this.lastCpu.at)) * 100);
		this.lastCpu = { at: now, usage };
		return this.localNode.updateLocalInfo(() => Promise.resolve({ avg })).then(() => this.sendHeartbeat());
	}

	heartbeatReceived(nodeID: string, payload: unknown) {
		super.heartbeatReceived(nodeID, payload);
		if (this.registry.nodes.get(nodeID)?.available) this.lastSeen.set(nodeID, Date.now());
	}

	checkRemoteNodes() {
		if (this.opts.disableHeartbeatChecks) return;
		const now = Date.now();
		const available = new Set<string>();
		for (const node of this.registry.nodes.toArray()) {
			if (node.local || !node.available) continue;
			available.add(node.id);
			const seen = this.lastSeen.get(node.id);
			// Newly (re)connected since the last check: its clock starts now.
			if (seen === undefined) {
				this.lastSeen.set(node.id, now);
				continue;
			}
			if (now - seen > this.prompt.timeoutMs) {
				this.logger.warn(`No heartbeat from '${node.id}' for ${now - seen} ms: it leaves the registry.`);
				this.lastSeen.delete(node.id);
				this.registry.nodes.disconnected(node.id, true);
			}
		}
		for (const id of this.lastSeen.keys()) if (!available.has(id)) this.lastSeen.delete(id);
	}
}
