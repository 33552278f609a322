/** `npm start`: runs the services of SERVICES (all by default) until SIGINT/SIGTERM. */
import { createBroker } from "./broker";

const broker = createBroker();
broker.start().catch(err => {
	broker.logger.fatal("Start-up failed", err);
	process.exit(1);
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
	process.once(signal, () => {
		broker.stop().finally(() => process.exit(0));
	});
}
