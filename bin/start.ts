/**
 * `npm start`: runs the services of SERVICES (all by default) until SIGINT/SIGTERM. An empty
 * embedded shop gets a small demo catalog (see demo-data.ts; DEMO_DATA=0 turns it off).
 */
import { createBroker } from "./broker";
import { readSettings } from "../mixins/settings";
import { demoBanner, loadDemoData } from "./demo-data";

const settings = readSettings();
const broker = createBroker();
broker
	.start()
	.then(async () => {
		if (!settings.demoData || !broker.getLocalService("catalog")) return;
		try {
			const made = await loadDemoData(broker);
			broker.logger.info(`\n${demoBanner(settings, made, settings.adminPassword !== readSettings({}).adminPassword)}`);
		} catch (err) {
			broker.logger.warn("Demo data could not be loaded", (err as Error).message);
		}
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
