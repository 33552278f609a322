/**
 * `npm start`: runs the services of SERVICES (all by default) until SIGINT/SIGTERM. An empty
 * embedded shop gets a small demo catalog (see demo-data.ts; DEMO_DATA=0 turns it off).
 * `npm start -- --repl`: the same, with an operator's REPL on this process (the embedded shop's
 * own REPL: its sagas are in this process's memory, no other process can see them).
 */
import { createBroker } from "./broker";
import { readSettings } from "../infra/settings";
import { demoBanner, loadDemoData } from "./demo-data";
import { operatorCommands } from "./repl-commands";

const settings = readSettings();
const withRepl = process.argv.includes("--repl");
const broker = createBroker(withRepl ? { options: { replOptions: { customCommands: operatorCommands() } } as any } : {});
broker
	.start()
	.then(async () => {
		if (settings.demoData && broker.getLocalService("catalog")) {
			try {
				const made = await loadDemoData(broker);
				broker.logger.info(`\n${demoBanner(settings, made, settings.adminPassword !== readSettings({}).adminPassword)}`);
			} catch (err) {
				broker.logger.warn("Demo data could not be loaded", (err as Error).message);
			}
		}
		if (withRepl) broker.repl();
	})
	.catch(err => {
		broker.logger.fatal("Start-up failed", err);
		process.exit(1);
	});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
	process.once(signal, () => {
		broker.stop().finally(() => process.exit(0));
	});
}
