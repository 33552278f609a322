import { expect } from "chai";
import { Errors, ServiceBroker } from "moleculer";
import { CorrelationLogging } from "../../infra/correlation.middleware";

describe("correlation ids in the logs", () => {
	it("every call is logged with its correlation id, and a failure that is not the client's at warn level", async () => {
		const lines: string[] = [];
		const original = { log: console.log, warn: console.warn, info: console.info, error: console.error, debug: console.debug };
		const capture = (...args: unknown[]) => void lines.push(args.map(String).join(" "));
		Object.assign(console, { log: capture, warn: capture, info: capture, error: capture, debug: capture });
		const broker = new ServiceBroker({ nodeID: "corr-test", logger: { type: "Console", options: { level: "debug", colors: false } }, middlewares: [CorrelationLogging] });
		broker.createService({
			name: "probe",
			actions: {
				ok: () => "fine",
				broken: () => {
					throw new Error("database went away");
				},
				refused: () => {
					throw new Errors.MoleculerClientError("no", 409, "OUT_OF_STOCK");
				}
			}
		});
		try {
			await broker.start();
			await broker.call("probe.ok", {}, { meta: { correlationId: "corr-123" } });
			await broker.call("probe.broken", {}, { meta: { correlationId: "corr-456" } }).catch(() => undefined);
			await broker.call("probe.refused", {}, { meta: { correlationId: "corr-789" } }).catch(() => undefined);
		} finally {
			await broker.stop();
			Object.assign(console, original);
		}
		expect(lines.some(l => l.includes("probe.ok") && l.includes("corr-123"))).to.equal(true);
		expect(lines.some(l => l.includes("WARN") && l.includes("probe.broken failed") && l.includes("corr-456") && l.includes("database went away"))).to.equal(true);
		expect(lines.some(l => l.includes("probe.refused failed"))).to.equal(false);
	});
});
