/** The registry (the REPL's `actions`, other nodes' INFO) sees field names, and validation still uses joi. */
import { expect } from "chai";
import Joi from "joi";
import { ServiceBroker } from "moleculer";
import { JoiValidator, ReadableParams } from "../../infra/joi-validator";

describe("ReadableParams: actions list real parameter names", () => {
	it("summarises each field of an action's joi params, also from a mixin, and validation is unchanged", async () => {
		const broker = new ServiceBroker({ logger: false, validator: new JoiValidator({}) as any, middlewares: [ReadableParams] });
		broker.createService({
			name: "probe",
			mixins: [{ actions: { fromMixin: { params: Joi.object({ q: Joi.string().required() }), handler: () => 1 } } }],
			actions: { a: { params: Joi.object({ orderId: Joi.string().guid().required(), n: Joi.number().integer() }), handler: (ctx: any) => ctx.params } }
		} as any);
		await broker.start();
		try {
			const listed = Object.fromEntries(broker.registry.getActionList({ onlyLocal: true, skipInternal: true } as any).map((i: any) => [i.name, i.action.params]));
			expect(listed["probe.a"]).to.deep.equal({ orderId: "string, uuid, required", n: "number, integer, optional" });
			expect(listed["probe.fromMixin"]).to.deep.equal({ q: "string, required" });
			const info: any = broker.registry.getLocalNodeInfo(true);
			expect(info.services.find((s: any) => s.name === "probe").actions["probe.a"].params).to.deep.equal(listed["probe.a"]);
			expect(await broker.call("probe.a", { orderId: "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", n: "3" })).to.deep.equal({ orderId: "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f", n: 3 });
			const err: any = await broker.call("probe.a", { orderId: "nope" }).catch(e => e);
			expect(err.code).to.equal(422);
			expect(err.data.map((d: any) => d.field)).to.deep.equal(["orderId"]);
		} finally {
			await broker.stop();
		}
	});
});
