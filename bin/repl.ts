/**
 * `npm run repl`: an operator's node. With TRANSPORTER set it joins the running cluster and runs
 * no service of its own (unless SERVICES says so). Without TRANSPORTER there is no cluster to
 * join: use `npm start -- --repl`, which gives the embedded shop a REPL of its own.
 * The operator's commands (sagas, saga, order, dlq) are in bin/repl-commands.ts.
 */
import { settings } from "../infra/settings";
import { createBroker } from "./broker";
import { operatorCommands } from "./repl-commands";

if (!settings.transporter) {
	console.error("npm run repl joins a running cluster (set TRANSPORTER, NAMESPACE as the cluster has them).\nFor the embedded shop, start it with its REPL: npm start -- --repl");
	process.exit(2);
}
const broker = createBroker({ services: settings.services ?? [], options: { replOptions: { customCommands: operatorCommands() } } as any });
broker
	.start()
	// The cluster's services are known once their INFO arrived: the commands can be used at the first prompt.
	.then(() => broker.waitForServices(["checkout", "ops"], 15_000).catch(() => broker.logger.warn("checkout or ops is not running in this cluster: some commands will fail")))
	.then(() => broker.repl());
