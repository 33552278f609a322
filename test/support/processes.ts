/**
 * Runs services as real OS processes (`node --import tsx bin/start.ts` with SERVICES=…), the way
 * they are deployed, so a test can SIGKILL one in the middle of its work. One process, not the
 * `tsx` command: that one runs the program in a child of its own, and a SIGKILL of the wrapper
 * would leave the services running on as an orphan.
 */
import { ChildProcess, spawn } from "node:child_process";
import path from "node:path";

const root = path.join(__dirname, "..", "..");

export interface ServiceProcess {
	child: ChildProcess;
	output: string[];
	kill(signal?: NodeJS.Signals): Promise<void>;
}

/** `nodeArgs` go before the program (the bench passes `--cpu-prof …` there). */
export function spawnServices(services: string[], env: Record<string, string> = {}, nodeArgs: string[] = []): ServiceProcess {
	const output: string[] = [];
	const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", "bin/start.ts"], {
		cwd: root,
		env: { ...process.env, SERVICES: services.join(","), NODE_ID: `${process.env.TEST_RUN_ID}-${services.join("+")}-${Date.now().toString(36)}`, ...env },
		stdio: ["ignore", "pipe", "pipe"]
	});
	const keep = (b: Buffer) => {
		output.push(b.toString());
		if (output.length > 5000) output.shift();
	};
	child.stdout!.on("data", keep);
	child.stderr!.on("data", keep);
	return {
		child,
		output,
		kill: (signal = "SIGTERM") =>
			new Promise(resolve => {
				if (child.exitCode !== null || child.signalCode !== null) return resolve();
				child.once("exit", () => resolve());
				child.kill(signal);
			})
	};
}
