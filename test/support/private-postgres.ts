/**
 * A disposable PostgreSQL of one test, never the shared one: `initdb` into a temporary directory
 * and `pg_ctl` on a free port (as the `postgres` user when the tests run as root: the server
 * refuses to run as root). The test restarts it or stops it for a while; it is always stopped by
 * `destroy()`, which also removes its directory.
 */
import { execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

function binDir(): string {
	const base = "/usr/lib/postgresql";
	const versions = existsSync(base) ? readdirSync(base).sort((a, b) => Number(b) - Number(a)) : [];
	for (const v of versions) if (existsSync(path.join(base, v, "bin", "pg_ctl"))) return path.join(base, v, "bin");
	throw new Error("No PostgreSQL server binaries under /usr/lib/postgresql (Debian package postgresql)");
}

export class PrivatePostgres {
	readonly dir = mkdtempSync(path.join(os.tmpdir(), "saga-pg-"));
	private readonly bin = binDir();
	private readonly asRoot = process.getuid?.() === 0;

	constructor(public port: number) {}

	get url() {
		return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
	}

	private run(tool: string, args: string[]) {
		const cmd = path.join(this.bin, tool);
		const [file, argv] = this.asRoot ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
		return execFileSync(file, argv, { stdio: "pipe", timeout: 120_000 }).toString();
	}

	private get data() {
		return path.join(this.dir, "data");
	}

	/** initdb (trust authentication, user postgres) and start. */
	async init() {
		if (this.asRoot) {
			const pw = execFileSync("id", ["-u", "postgres"]).toString().trim();
			const gid = execFileSync("id", ["-g", "postgres"]).toString().trim();
			chownSync(this.dir, Number(pw), Number(gid));
		}
		this.run("initdb", ["-D", this.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
		this.start();
	}

	/** The server's options, the same at every start: its port, address, socket directory and limits. */
	private get serverOptions() {
		return ["-o", `-p ${this.port} -c listen_addresses=127.0.0.1 -k ${this.dir} -c max_connections=400 -c fsync=off`, "-l", path.join(this.dir, "log")];
	}

	start() {
		this.run("pg_ctl", ["-D", this.data, ...this.serverOptions, "-w", "-t", "60", "start"]);
	}

	/** A fast shutdown (clients disconnected, in-flight transactions rolled back), as an operator's restart does. */
	stop() {
		this.run("pg_ctl", ["-D", this.data, "-m", "fast", "-w", "-t", "60", "stop"]);
	}

	restart() {
		this.run("pg_ctl", ["-D", this.data, ...this.serverOptions, "-m", "fast", "-w", "-t", "60", "restart"]);
	}

	destroy() {
		try {
			this.run("pg_ctl", ["-D", this.data, "-m", "immediate", "-w", "-t", "30", "stop"]);
		} catch {
			// not running
		}
		rmSync(this.dir, { recursive: true, force: true });
	}
}
