/**
 * `npm run repl`: an operator's node. With TRANSPORTER set it joins the running cluster
 * (SERVICES= empty means it runs no service of its own); otherwise it starts the embedded shop.
 * Custom commands: `sagas [state]`, `saga <id>`, `saga-retry <id>`, `saga-compensate <id>`.
 */
import { createBroker } from "./broker";

const broker = createBroker({ services: process.env.TRANSPORTER ? (process.env.SERVICES ? undefined : []) : undefined });

broker.start().then(() =>
	(broker.repl as any)({
		customCommands: [
			{
				command: "sagas [state]",
				description: "List sagas (optionally in one state)",
				async action(b: any, args: any) {
					const res = await b.call("checkout.listSagas", { state: args.state, pageSize: 50 });
					console.table(res.rows.map((r: any) => ({ id: r.id, type: r.type, state: r.state, status: r.status, updatedAt: r.updatedAt })));
				}
			},
			{
				command: "saga <id>",
				description: "Show one saga with its history",
				async action(b: any, args: any) {
					console.dir(await b.call("checkout.getSaga", { id: args.id }), { depth: 6 });
				}
			},
			{
				command: "saga-retry <id>",
				description: "Resume a parked saga",
				async action(b: any, args: any) {
					console.dir(await b.call("checkout.retrySaga", { id: args.id }), { depth: 3 });
				}
			},
			{
				command: "saga-compensate <id>",
				description: "Force a saga to compensate",
				async action(b: any, args: any) {
					console.dir(await b.call("checkout.compensateSaga", { id: args.id }), { depth: 3 });
				}
			}
		]
	})
);
