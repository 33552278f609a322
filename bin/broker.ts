/**
 * Creates a broker with the services this process runs. Used by `npm start`, the REPL,
 * the tests (one broker per simulated process) and the benchmark.
 */
import path from "node:path";
import { BrokerOptions, ServiceBroker } from "moleculer";
import { brokerOptions } from "../moleculer.config";
import { readSettings } from "../infra/settings";
import { SERVICE_NAMES, ServiceName } from "../services";

export function createBroker(opts: { services?: readonly string[]; env?: NodeJS.ProcessEnv; nodeID?: string; options?: Partial<BrokerOptions> } = {}): ServiceBroker {
	const s = readSettings(opts.env ?? process.env);
	const broker = new ServiceBroker({ ...brokerOptions(s), nodeID: opts.nodeID ?? s.nodeId, ...opts.options });
	const wanted = opts.services ?? s.services ?? SERVICE_NAMES;
	for (const name of wanted) {
		if (!(SERVICE_NAMES as readonly string[]).includes(name)) throw new Error(`Unknown service '${name}'. Known: ${SERVICE_NAMES.join(", ")}`);
		broker.loadService(path.join(__dirname, "..", "services", `${name as ServiceName}.service.ts`));
	}
	// Stopping: first no new requests from RabbitMQ's shared queues (infra/amqp-transporter.ts), then
	// Moleculer's own stop (empty INFO, `stopping`, services stopped after their running calls).
	// Once: a SIGTERM reaches both Moleculer's own handler and bin/start.ts's, and a second stop
	// must not set `stopping` while the first is still cancelling consumers (the node would
	// answer "not available" to requests it was still being sent).
	const stop = broker.stop.bind(broker);
	let stopping: Promise<void> | null = null;
	broker.stop = () =>
		(stopping ??= (async () => {
			await (broker.transit?.tx as any)?.stopTakingRequests?.().catch(() => undefined);
			await stop();
		})());
	return broker;
}
