/**
 * Fault injection for the crash tests, off unless `CRASH_AT` names points (comma-separated):
 *
 *   <saga>:<step>:forward:before   the orchestrator, once the step is recorded as sent, before the command goes out
 *   <saga>:<step>:forward:after    the orchestrator, once the step's answer is recorded
 *   <saga>:<step>:wait             the orchestrator, once a waiting step (BLIK, PayPal) is recorded as waiting
 *   <saga>:<step>:compensate:before / :after   the same around a compensation
 *   action:<service.action>:before a participant, before it runs the command
 *   action:<service.action>:after  a participant, after the command committed, before it answers
 *
 * At a named point the process kills itself with SIGKILL — no cleanup, as a power cut or the OOM
 * killer would — once per point and test run: a marker file (`CRASH_MARKER_DIR`, the run's
 * namespace in its name) tells a restarted process, or another replica, that the point fired.
 * Nothing reaches it from outside: it is read from the environment at start.
 */
import fs from "node:fs";
import path from "node:path";
import type { Middleware } from "moleculer";
import { settings } from "./settings";

/** Kills this process if `point` is armed and has not fired yet in this test run. */
export function crashAt(point: string): void {
	if (settings.crashAt.size === 0 || !settings.crashAt.has(point)) return;
	const marker = path.join(settings.crashMarkerDir, `crash-${settings.namespace}-${point.replace(/[^A-Za-z0-9._-]/g, "_")}`);
	try {
		fs.writeFileSync(marker, String(process.pid), { flag: "wx" });
	} catch {
		return; // fired before
	}
	process.kill(process.pid, "SIGKILL");
}

/** The participants' points: around every local action that has one armed. */
export const CrashPoints: Middleware = {
	name: "CrashPoints",
	localAction(next: any, action: any) {
		const name = String(action.name);
		if (![...settings.crashAt].some(p => p.startsWith(`action:${name}:`))) return next;
		return async (ctx: any) => {
			crashAt(`action:${name}:before`);
			const result = await next(ctx);
			crashAt(`action:${name}:after`);
			return result;
		};
	}
} as any;
