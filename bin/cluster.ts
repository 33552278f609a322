/**
 * `npm run cluster`: the whole system as local processes on a machine that has RabbitMQ,
 * PostgreSQL and Redis — one process per service, two checkout orchestrators — the way it is
 * deployed. TRANSPORTER, DATABASE_URL and REDIS_URL default to the servers on localhost; every
 * other setting is passed on as it is (NAMESPACE, SCHEMA_PREFIX, REDIS_PREFIX, PORT …).
 *
 * Each process's output goes to `logs/<process>.log` (CLUSTER_LOG_DIR) and to this terminal with
 * the process's name in front. Ctrl-C (SIGINT) or SIGTERM stops every process gracefully and
 * exits once all of them are gone; a process that dies on its own is reported, not restarted.
 */
import { ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { readSettings } from "../infra/settings";
import { SERVICE_NAMES } from "../services";

const root = path.join(__dirname, "..");
const s = readSettings();
const logDir = s.clusterLogDir;
fs.mkdirSync(logDir, { recursive: true });

/** Every setting passes on to the processes as it is; the three servers default to localhost. */
const env: NodeJS.ProcessEnv = {
	...process.env,
	TRANSPORTER: s.transporter ?? "amqp://guest:guest@localhost:5672",
	DATABASE_URL: s.databaseUrl ?? "postgres://postgres@localhost:5432/saga_commerce",
	REDIS_URL: s.redisUrl ?? "redis://localhost:6379"
};

/** One process per service; the saga orchestrator twice (either takes over the other's sagas). */
const processes = SERVICE_NAMES.flatMap((s): Array<{ name: string; services: string }> =>
	s === "checkout" ? [{ name: "checkout-1", services: s }, { name: "checkout-2", services: s }] : [{ name: s, services: s }]
);

const children = new Map<string, ChildProcess>();
const width = Math.max(...processes.map(p => p.name.length));
let stopping = false;

for (const p of processes) {
	const file = fs.createWriteStream(path.join(logDir, `${p.name}.log`), { flags: "a" });
	const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "bin", "start.ts")], {
		cwd: root,
		env: { ...env, SERVICES: p.services, NODE_ID: `${p.name}-${process.pid}` },
		stdio: ["ignore", "pipe", "pipe"]
	});
	children.set(p.name, child);
	const prefix = `${p.name.padEnd(width)} | `;
	for (const stream of [child.stdout!, child.stderr!]) {
		readline.createInterface({ input: stream }).on("line", line => {
			file.write(line + "\n");
			process.stdout.write(prefix + line + "\n");
		});
	}
	child.on("exit", (code, signal) => {
		children.delete(p.name);
		file.end();
		console.log(`${prefix}exited (${signal ?? code})${stopping ? "" : " on its own"}`);
		if (stopping && children.size === 0) {
			console.log("cluster: every process stopped");
			process.exit(0);
		}
	});
	console.log(`cluster: started ${p.name} (pid ${child.pid}), log ${path.relative(process.cwd(), path.join(logDir, `${p.name}.log`))}`);
}

function stop(signal: NodeJS.Signals) {
	if (stopping) return;
	stopping = true;
	console.log(`cluster: ${signal}: stopping ${children.size} process(es)…`);
	for (const child of children.values()) child.kill("SIGTERM");
	if (children.size === 0) process.exit(0);
	// A process that does not stop within 30 s is killed.
	setTimeout(() => {
		for (const child of children.values()) child.kill("SIGKILL");
	}, 30_000).unref();
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
