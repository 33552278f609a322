/**
 * A disposable redis-server of one test, never the shared one: its own free port and directory,
 * the append-only file on (`appendfsync everysec`, as docker-compose runs it) unless told
 * otherwise. The test empties it (FLUSHALL), shuts it down and starts it again with the same
 * arguments and directory, and always stops it by its own pid.
 */
import { ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import Redis from "ioredis";
import { eventually } from "./cluster";

export async function freePort(): Promise<number> {
	const server = net.createServer();
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	const port = (server.address() as AddressInfo).port;
	await new Promise(resolve => server.close(resolve));
	return port;
}

export class PrivateRedis {
	child: ChildProcess | null = null;
	readonly dir = mkdtempSync(path.join(os.tmpdir(), "saga-redis-"));
	constructor(
		public port: number,
		private appendOnly = true
	) {}

	get url() {
		return `redis://127.0.0.1:${this.port}`;
	}

	async start() {
		const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--dir", this.dir];
		args.push(...(this.appendOnly ? ["--appendonly", "yes", "--appendfsync", "everysec"] : ["--appendonly", "no"]));
		const child = spawn("redis-server", args, { stdio: "ignore" });
		this.child = child;
		await eventually(async () => {
			const probe = this.client({ lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
			try {
				await probe.connect();
				// Loading the append-only file answers LOADING until it is done.
				return (await probe.ping()) === "PONG";
			} finally {
				probe.disconnect();
			}
		}, 20_000, "the private redis-server");
	}

	client(opts: import("ioredis").RedisOptions = {}): Redis {
		const r = new Redis(this.url, opts);
		r.on("error", () => undefined);
		return r;
	}

	async flushAll() {
		const r = this.client();
		try {
			await r.flushall();
		} finally {
			r.disconnect();
		}
	}

	/** SHUTDOWN as an operator's restart does it: the append-only file is synced, the process exits. */
	async shutdown() {
		const child = this.child;
		if (!child || child.exitCode !== null) return;
		const exited = new Promise(resolve => child.once("exit", resolve));
		const r = this.client({ maxRetriesPerRequest: 0 });
		await r.call("SHUTDOWN").catch(() => undefined);
		r.disconnect();
		await exited;
		this.child = null;
	}

	async stop() {
		const child = this.child;
		this.child = null;
		if (child && child.exitCode === null && child.signalCode === null) {
			await new Promise(resolve => {
				child.once("exit", resolve);
				child.kill("SIGKILL");
			});
		}
	}

	removeDir() {
		rmSync(this.dir, { recursive: true, force: true });
	}
}
