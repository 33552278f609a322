/**
 * A request sent to an action's shared queue (`REQB.<action>`) while that queue does not exist
 * — the first replica of a service has answered a DISCOVER but is still declaring its queues —
 * is not lost: it waits in the queue for its consumer. RabbitMQ drops a message sent to a queue
 * it does not know; the caller used to see a 504 fifteen seconds later (found as a flaky first
 * test of place-retry-crash). Real RabbitMQ, two brokers in this process.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import amqp from "amqplib";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";

describe("a request to a shared queue that does not exist yet waits for its consumer (real RabbitMQ)", function () {
	this.timeout(60_000);
	const ns = `${process.env.TEST_RUN_ID}-sq${randomUUID().slice(0, 4)}`;
	const env = { ...process.env, NAMESPACE: ns };
	let server: ServiceBroker, client: ServiceBroker;
	let rabbit: amqp.ChannelModel;
	const queue = `MOL-${ns}.REQB.greeter.hello`;

	before(async () => {
		server = createBroker({ services: [], env, nodeID: `${ns}-server` });
		server.createService({ name: "greeter", actions: { hello: () => "hello" } });
		client = createBroker({ services: [], env, nodeID: `${ns}-client` });
		await Promise.all([server.start(), client.start()]);
		await client.waitForServices(["greeter"], 20_000);
		rabbit = await amqp.connect(process.env.TRANSPORTER!);
	});

	after(async () => {
		const ch = await rabbit.createChannel();
		await ch.deleteQueue(queue).catch(() => undefined);
		await rabbit.close();
		await Promise.all([client?.stop(), server?.stop()]);
	});

	it("answers a call made while the queue is gone, once the replica consumes again", async () => {
		expect(await client.call("greeter.hello")).to.equal("hello");
		// The queue vanishes (its consumer with it): the client still lists the action, as a gateway
		// lists a replica whose queues are not declared yet.
		const ch = await rabbit.createChannel();
		await ch.deleteQueue(queue);
		await ch.close();
		const calling = client.call("greeter.hello", {}, { timeout: 10_000 });
		await new Promise(r => setTimeout(r, 500));
		await (server.transit!.tx as any).makeBalancedSubscriptions();
		expect(await calling).to.equal("hello");
	});
});
