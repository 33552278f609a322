/**
 * What the benches share: the CPU time of processes, the pids of a program, Redis's command count,
 * and a broker of their own over RabbitMQ.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../bin/broker";

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
export const CLK_TCK = 100;

/** utime + stime of a process in clock ticks, or null when it is gone. */
export function cpuTicks(pid: number): number | null {
	try {
		const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
		const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
		return Number(fields[11]) + Number(fields[12]);
	} catch {
		return null;
	}
}

/** Each pid's clock ticks so far, for `ticksSince`. */
export function tickSnapshot(pids: number[]): Map<number, number> {
	return new Map(pids.map(pid => [pid, cpuTicks(pid) ?? 0]));
}

/** The clock ticks `pids` spent since `snapshot` (a pid started since counts from zero; one gone counts nothing). */
export function ticksSince(snapshot: Map<number, number>, pids: number[]): number {
	let ticks = 0;
	for (const pid of pids) {
		const now = cpuTicks(pid);
		if (now !== null) ticks += now - (snapshot.get(pid) ?? 0);
	}
	return ticks;
}

/** The pids of every process running the program `name` (pgrep -x). */
export function pidsOf(name: string): number[] {
	try {
		return execFileSync("pgrep", ["-x", name], { encoding: "utf8" }).split("\n").filter(Boolean).map(Number);
	} catch {
		return [];
	}
}

/** Commands the Redis server has processed since it started (INFO stats; a script and each command inside it count). */
export async function redisCommandsProcessed(redis: Redis): Promise<number | null> {
	const n = /total_commands_processed:(\d+)/.exec(await redis.info("stats"));
	return n ? Number(n[1]) : null;
}

export const AMQP_URL = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";

/**
 * A started broker over RabbitMQ with this project's transporter, in `namespace` (so nothing else
 * on the server sees it), as node `<namespace>-<role>`. With `ping`, it runs `<ping>.ping`, an
 * action that answers at once, and stops on SIGTERM.
 */
export async function benchBroker(namespace: string, role: string, ping?: string): Promise<ServiceBroker> {
	const broker = createBroker({ services: [], env: { ...process.env, TRANSPORTER: AMQP_URL, NAMESPACE: namespace, LOG_LEVEL: "warn" }, nodeID: `${namespace}-${role}` });
	if (ping) {
		broker.createService({ name: ping, actions: { ping: () => "pong" } });
		process.on("SIGTERM", () => void broker.stop().finally(() => process.exit(0)));
	}
	await broker.start();
	return broker;
}
