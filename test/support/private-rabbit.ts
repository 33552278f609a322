/**
 * A disposable RabbitMQ node of a test's own (its own node name, ports and data directory
 * under /tmp, no plugins), so a fault test can stop and start the broker without touching
 * the machine's shared RabbitMQ. Always `stop()` it in an `after` hook.
 */
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface PrivateRabbit {
	url: string;
	node: string;
	/** `rabbitmqctl stop_app`: every connection is closed, the node stays up. */
	stopApp(): Promise<void>;
	startApp(): Promise<void>;
	/** Closes every client connection without stopping the app. */
	closeConnections(reason?: string): Promise<void>;
	ctl(...args: string[]): Promise<string>;
	stop(): Promise<void>;
}

async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const srv = net.createServer();
		srv.once("error", reject);
		srv.listen(0, "127.0.0.1", () => {
			const { port } = srv.address() as net.AddressInfo;
			srv.close(() => resolve(port));
		});
	});
}

export async function startPrivateRabbit(): Promise<PrivateRabbit> {
	const id = randomBytes(3).toString("hex");
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), `rabbit-rel-${id}-`));
	const port = await freePort();
	let distPort = await freePort();
	while (distPort === port) distPort = await freePort();
	const node = `rabbit-rel-${id}@localhost`;
	fs.mkdirSync(path.join(dir, "mnesia"));
	fs.mkdirSync(path.join(dir, "log"));
	fs.writeFileSync(path.join(dir, "enabled_plugins"), "[].\n");
	fs.writeFileSync(path.join(dir, "rabbitmq.conf"), `listeners.tcp.default = 127.0.0.1:${port}\nloopback_users = none\n`);
	// The rabbitmq-server wrapper runs the node as the rabbitmq user when started by root.
	if (process.getuid?.() === 0) await run("chown", ["-R", "rabbitmq:rabbitmq", dir]).catch(() => undefined);
	fs.chmodSync(dir, 0o755);
	const env = {
		...process.env,
		RABBITMQ_NODENAME: node,
		RABBITMQ_NODE_PORT: String(port),
		RABBITMQ_DIST_PORT: String(distPort),
		RABBITMQ_MNESIA_BASE: path.join(dir, "mnesia"),
		RABBITMQ_LOG_BASE: path.join(dir, "log"),
		RABBITMQ_CONFIG_FILE: path.join(dir, "rabbitmq"),
		RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, "enabled_plugins"),
		RABBITMQ_PID_FILE: path.join(dir, "node.pid")
	};
	const ctl = async (...args: string[]) => (await run("rabbitmqctl", ["-q", "-n", node, ...args], { timeout: 120_000 })).stdout;
	let stopped = false;
	// Mocha's `exit` option ends the process even when an `after` hook timed out: stop the node then too.
	const onExit = () => {
		if (stopped) return;
		stopped = true;
		try {
			execFileSync("rabbitmqctl", ["-q", "-n", node, "stop"], { stdio: "ignore", timeout: 30_000 });
		} catch {
			/* already gone */
		}
		fs.rmSync(dir, { recursive: true, force: true });
	};
	process.once("exit", onExit);
	const rabbit: PrivateRabbit = {
		url: `amqp://guest:guest@127.0.0.1:${port}`,
		node,
		ctl,
		stopApp: async () => void (await ctl("stop_app")),
		startApp: async () => {
			await ctl("start_app");
			await ctl("await_startup", "--timeout", "60");
		},
		closeConnections: async (reason = "closed by the test") => void (await ctl("close_all_connections", reason)),
		stop: async () => {
			if (stopped) return;
			stopped = true;
			process.removeListener("exit", onExit);
			await ctl("stop").catch(() => undefined);
			fs.rmSync(dir, { recursive: true, force: true });
		}
	};
	await run("rabbitmq-server", ["-detached"], { env, timeout: 60_000 });
	// The detached node takes a few seconds to register with epmd; until then await_startup refuses.
	const deadline = Date.now() + 90_000;
	for (;;) {
		try {
			await ctl("await_startup", "--timeout", "60");
			break;
		} catch (err) {
			if (Date.now() > deadline) {
				await rabbit.stop();
				throw new Error(`private RabbitMQ node ${node} did not start: ${(err as Error).message}`);
			}
			await new Promise(r => setTimeout(r, 500));
		}
	}
	return rabbit;
}
