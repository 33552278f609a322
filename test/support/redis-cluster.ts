/**
 * A disposable local Redis Cluster of three masters for tests: three `redis-server
 * --cluster-enabled yes` on free ports with their files under a temporary directory, joined by
 * `redis-cli --cluster create`. `stop()` shuts every node down and removes the directory; it is
 * safe to call after a failed start.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

/** True when nothing listens on the port. */
function free(port: number): Promise<boolean> {
	return new Promise(resolve => {
		const server = net.createServer();
		server.once("error", () => resolve(false));
		server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
	});
}

/** A port P such that P and its cluster bus port P + 10000 are free. */
async function freeClusterPort(taken: number[]): Promise<number> {
	for (let i = 0; i < 200; i++) {
		const port = 20000 + Math.floor(Math.random() * 20000);
		if (taken.includes(port)) continue;
		if ((await free(port)) && (await free(port + 10000))) return port;
	}
	throw new Error("no free port pair for a Redis Cluster node");
}

export interface LocalRedisCluster {
	ports: number[];
	nodes: Array<{ host: string; port: number }>;
	stop(): Promise<void>;
}

export async function startRedisCluster(): Promise<LocalRedisCluster> {
	const dir = mkdtempSync(path.join(os.tmpdir(), "saga-redis-cluster-"));
	const ports: number[] = [];
	const stop = async () => {
		for (const port of ports) {
			await run("redis-cli", ["-p", String(port), "shutdown", "nosave"]).catch(() => undefined);
			// A node that would not answer is killed by its pid file.
			try {
				process.kill(Number(readFileSync(path.join(dir, `redis-${port}.pid`), "utf8")), "SIGKILL");
			} catch {
				/* gone already */
			}
		}
		rmSync(dir, { recursive: true, force: true });
	};
	try {
		for (let i = 0; i < 3; i++) ports.push(await freeClusterPort(ports));
		for (const port of ports) {
			await run("redis-server", [
				"--port", String(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
				"--cluster-config-file", path.join(dir, `nodes-${port}.conf`), "--save", "", "--appendonly", "no",
				"--daemonize", "yes", "--dir", dir, "--pidfile", path.join(dir, `redis-${port}.pid`), "--logfile", path.join(dir, `redis-${port}.log`)
			]);
		}
		for (const port of ports) {
			for (let i = 0; ; i++) {
				const pong = await run("redis-cli", ["-p", String(port), "ping"]).then(r => r.stdout.trim()).catch(() => "");
				if (pong === "PONG") break;
				if (i > 100) throw new Error(`Redis node on ${port} did not start`);
				await sleep(50);
			}
		}
		await run("redis-cli", ["--cluster", "create", ...ports.map(p => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"]);
		for (let i = 0; ; i++) {
			const states = await Promise.all(ports.map(p => run("redis-cli", ["-p", String(p), "cluster", "info"]).then(r => r.stdout).catch(() => "")));
			if (states.every(s => s.includes("cluster_state:ok"))) break;
			if (i > 200) throw new Error("the Redis Cluster did not reach cluster_state:ok");
			await sleep(50);
		}
	} catch (err) {
		await stop();
		throw err;
	}
	return { ports, nodes: ports.map(port => ({ host: "127.0.0.1", port })), stop };
}
