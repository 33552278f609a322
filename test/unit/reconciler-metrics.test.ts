import { expect } from "chai";
import { ServiceBroker } from "moleculer";
import { reconcilerMetrics } from "../../services/checkout/metrics";

describe("the reconciler's metrics", () => {
	it("count each pass's actions under their names, and exist at zero before any pass", async () => {
		const broker = new ServiceBroker({ nodeID: "reconciler-metrics", logger: false, metrics: { enabled: true, reporter: [] } });
		await broker.start();
		try {
			const count = reconcilerMetrics(broker);
			const values = () => Object.fromEntries((broker.metrics.getMetric("saga.reconciler.actions.total")!.snapshot() as any[]).map(v => [v.labels.action, v.value]));
			expect(values()).to.deep.equal({ finished: 0, compensated: 0, cart_checked_out: 0, cart_unlocked: 0, failed: 0 });
			count({ ran: true, ordersChecked: 9, finished: 2, compensated: 3, cartsCheckedOut: 1, cartsUnlocked: 0, failed: 0 });
			count({ ran: true, ordersChecked: 1, finished: 1, compensated: 0, cartsCheckedOut: 0, cartsUnlocked: 4, failed: 1 });
			expect(values()).to.deep.equal({ finished: 3, compensated: 3, cart_checked_out: 1, cart_unlocked: 4, failed: 1 });
		} finally {
			await broker.stop();
		}
	});
});
