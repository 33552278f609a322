/**
 * `npm run repl`: an operator's node. With TRANSPORTER set it joins the running cluster and runs
 * no service of its own (unless SERVICES says so); otherwise it starts the embedded shop.
 * Commands beside Moleculer's own: `sagas [state]`, `saga <id>`, `saga-retry <id>`, `saga-compensate <id>`.
 */
import type { ServiceBroker } from "moleculer";
import { settings } from "../mixins/settings";
import { createBroker } from "./broker";

const customCommands = [
	{
		command: "sagas [state]",
		description: "List the newest sagas, optionally in one state (e.g. parked, compensated)",
		async action(broker: ServiceBroker, args: { state?: string }) {
			const res: any = await broker.call("checkout.listSagas", { state: args.state, pageSize: 50 });
			console.table(res.rows.map((r: any) => ({ id: r.id, type: r.type, state: r.state, status: r.status, updatedAt: r.updatedAt })));
			console.log(`${res.total} saga(s)`);
		}
	},
	{
		command: "saga <id>",
		description: "Show one saga: state, data and history",
		async action(broker: ServiceBroker, args: { id: string }) {
			console.dir(await broker.call("checkout.getSaga", { id: args.id }), { depth: 6 });
		}
	},
	{
		command: "saga-retry <id>",
		description: "Resume a parked saga",
		async action(broker: ServiceBroker, args: { id: string }) {
			const rec: any = await broker.call("checkout.retrySaga", { id: args.id });
			console.log(`${rec.id}: ${rec.status} (${rec.state})`);
		}
	},
	{
		command: "saga-compensate <id>",
		description: "Give up on a saga and undo what it did",
		async action(broker: ServiceBroker, args: { id: string }) {
			const rec: any = await broker.call("checkout.compensateSaga", { id: args.id });
			console.log(`${rec.id}: ${rec.status} (${rec.state})`);
		}
	}
];

const joinsCluster = !!settings.transporter && !settings.services;
const broker = createBroker({ services: joinsCluster ? [] : undefined, options: { replOptions: { customCommands } } as any });
broker.start().then(() => broker.repl());
