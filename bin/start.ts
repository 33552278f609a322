/**
 * `npm start`: runs the services of SERVICES (all by default) until SIGINT/SIGTERM.
 * `npm start -- --repl`: the same, with an operator's REPL on this process (the embedded shop's
 * own REPL: its sagas are in this process's memory, no other process can see them).
 */
import { createBroker } from "./broker";
import { operatorCommands } from "./repl-commands";

const withRepl = process.argv.includes("--repl");
const broker = createBroker(withRepl ? { options: { replOptions: { customCommands: operatorCommands() } } as any } : {});
broker
	.start()
	.then(() => {
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
