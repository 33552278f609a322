/**
 * Every AMQP link a process relies on comes back by itself — Moleculer's transporter, the
 * @moleculer/channels adapter and the outbox relay's publisher — after a RabbitMQ restart with
 * work in flight, after a channel closed by an error, after a dropped connection; and nothing
 * is acked on the wrong channel. Runs against a private RabbitMQ node that the test stops and
 * starts (never the machine's shared one).
 *
 * `AMQP_STOCK=1 npx mocha test/reliability/amqp-reconnect.test.ts` runs the same scenarios on
 * the unpatched transporter and adapter of the packages: they fail (406 unknown delivery tag,
 * then silence).
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import amqp from "amqplib";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import { AmqpPublisher } from "../../infra/amqp-publisher";
import { CorrelationLogging } from "../../infra/correlation.middleware";
import { messagingHealth } from "../../infra/messaging-health";
import { eventually } from "../support/cluster";
import { PrivateRabbit, startPrivateRabbit } from "../support/private-rabbit";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Middleware: ChannelsMiddleware } = require("@moleculer/channels");

const stock = !!process.env.AMQP_STOCK;
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

describe("AMQP links come back by themselves (private RabbitMQ node)", function () {
	this.timeout(180_000);
	let rabbit: PrivateRabbit;
	const ns = `${process.env.TEST_RUN_ID}-rc${randomUUID().slice(0, 4)}`;
	const brokers: ServiceBroker[] = [];

	function broker(name: string): ServiceBroker {
		const env = { ...process.env, TRANSPORTER: rabbit.url, NAMESPACE: ns };
		const options: any = {};
		if (stock) {
			const amqpOpts = { url: rabbit.url, socketOptions: { noDelay: true } };
			options.transporter = { type: "AMQP", options: { ...amqpOpts, prefetch: 100, autoDeleteQueues: true } };
			options.middlewares = [
				ChannelsMiddleware({
					adapter: { type: "AMQP", options: { amqp: { ...amqpOpts, publishAssertExchange: { enabled: true }, queueOptions: { durable: true } }, maxInFlight: 20, maxRetries: 5, deadLettering: { enabled: true, queueName: "DEAD_LETTER" } } }
				}),
				CorrelationLogging
			];
		}
		const b = createBroker({ services: [], env, nodeID: `${ns}-${name}`, options });
		brokers.push(b);
		return b;
	}

	before(async function () {
		this.timeout(120_000);
		rabbit = await startPrivateRabbit();
	});
	after(async function () {
		this.timeout(120_000);
		try {
			// A broker whose links are dead may never finish stopping: bounded.
			await Promise.race([Promise.all(brokers.map(b => b.stop().catch(() => undefined))), sleep(30_000)]);
		} finally {
			await rabbit?.stop();
		}
	});

	/** stop_app, a pause, start_app: every client connection is cut. */
	async function restartRabbit(pauseMs = 1000) {
		await rabbit.stopApp();
		await sleep(pauseMs);
		await rabbit.startApp();
	}

	describe("Moleculer's transporter", () => {
		let server: ServiceBroker, client: ServiceBroker;
		let naps = 0;
		let napsDone = 0;
		before(async () => {
			server = broker("server");
			server.createService({
				name: "slow",
				actions: {
					/** A call that is still being handled when RabbitMQ goes, and ends after the transporter reconnected. */
					async nap() {
						naps++;
						const tx: any = server.transit!.tx;
						await eventually(async () => tx.connectionCount >= 2 && tx.channel && tx.connected, 60_000, "the server to reconnect");
						await sleep(500);
						napsDone++;
						return "rested";
					},
					ping: () => "pong"
				}
			});
			client = broker("client");
			await Promise.all([server.start(), client.start()]);
			await client.waitForServices(["slow"], 30_000);
			expect(await client.call("slow.ping")).to.equal("pong");
		});

		it("a call still running when RabbitMQ restarts: the node takes calls again afterwards (no ack on the new channel)", async () => {
			const inFlight = client.call("slow.nap", {}, { timeout: 60_000 }).catch(() => "lost");
			await eventually(async () => naps > 0, 10_000, "the nap to start");
			await restartRabbit();
			await eventually(async () => napsDone >= 1, 40_000, "the nap to end after the reconnect");
			await inFlight;
			await sleep(1000);
			const pongs = await eventually(
				async () => {
					const answers = await Promise.all(Array.from({ length: 10 }, () => client.call("slow.ping", {}, { timeout: 2000 }).catch(() => null)));
					return answers.every(a => a === "pong") ? answers : null;
				},
				40_000,
				"ten calls in a row to be answered after the restart"
			);
			expect(pongs).to.have.length(10);
			await sleep(3000); // a late wrong-channel ack would close the channel now
			expect(await client.call("slow.ping", {}, { timeout: 3000 })).to.equal("pong");
			if (!stock) expect((await messagingHealth(server)).transporter).to.equal("up");
		});

		it("a channel closed by an error is reopened with every subscription", async () => {
			const tx: any = (server as any).transit.tx;
			const before = tx.channelGeneration;
			await tx.channel.checkQueue(`no-such-queue-${randomUUID()}`).catch(() => undefined); // 404 closes the channel
			await eventually(async () => (await client.call("slow.ping", {}, { timeout: 1500 }).catch(() => null)) === "pong", 20_000, "calls to work again");
			expect(tx.channelGeneration).to.be.greaterThan(before);
			expect((await messagingHealth(server)).transporter).to.equal("up");
		});

		it("while a node has no channel, a call fails at once with a retryable 503 instead of vanishing", async function () {
			if (stock) this.skip();
			const tx: any = client.transit!.tx;
			const saved = tx.channel;
			tx.channel = null;
			try {
				const started = Date.now();
				const err: any = await client.call("slow.ping", {}, { timeout: 10_000 }).catch(e => e);
				expect(err.code).to.equal(503);
				expect(err.retryable).to.equal(true);
				expect(Date.now() - started, "no wait for a timeout").to.be.below(5000);
				expect((await messagingHealth(client)).status).to.equal("down");
			} finally {
				tx.channel = saved;
			}
		});
	});

	describe("the @moleculer/channels adapter", () => {
		let consumer: ServiceBroker, producer: ServiceBroker;
		const seen: string[] = [];
		const slowOnce = new Set<string>();
		before(async () => {
			consumer = broker("consumer");
			consumer.createService({
				name: "listener",
				channels: {
					"reliability.tested": {
						async handler(this: any, payload: { id: string; napMs?: number; fail?: boolean }) {
							if (payload.napMs && !slowOnce.has(payload.id)) {
								slowOnce.add(payload.id);
								await sleep(payload.napMs);
							}
							if (payload.fail) throw Object.assign(new Error("this one always fails"), { code: 422, type: "ALWAYS_FAILS" });
							seen.push(payload.id);
						}
					}
				}
			} as any);
			producer = broker("producer");
			await Promise.all([consumer.start(), producer.start()]);
			await sleep(500);
		});
		const send = (payload: object) => (producer as any).sendToChannel("reliability.tested", payload);
		const receives = async (id: string, timeout = 20_000) => {
			await eventually(async () => {
				await send({ id }).catch(() => undefined);
				return seen.includes(id);
			}, timeout, `message ${id} to be consumed`);
		};

		it("a message handled across a RabbitMQ restart is redelivered, and later messages are consumed", async () => {
			await receives("warm-up");
			await send({ id: "in-flight", napMs: 8000 });
			await eventually(async () => slowOnce.has("in-flight"), 10_000, "the slow handler to start");
			await restartRabbit();
			await sleep(9000); // the slow handler ends on the old channel's delivery after the reconnect
			await receives("after-restart", 30_000);
			await eventually(async () => seen.includes("in-flight"), 20_000, "the in-flight message (redelivered or acked)");
			await sleep(2000);
			await receives("later");
			if (!stock) expect((await messagingHealth(consumer)).channels).to.equal("up");
		});

		it("a channel closed by an error is reopened and consumption resumes", async () => {
			const adapter: any = (consumer as any).channelAdapter;
			await adapter.channel.checkQueue(`no-such-queue-${randomUUID()}`).catch(() => undefined);
			await receives("after-channel-error");
			expect(adapter.channel).to.not.equal(null);
		});

		it("a message that keeps failing lands in the dead-letter queue, persistent, with its origin and error", async function () {
			if (stock) this.skip();
			const id = randomUUID();
			await send({ id, fail: true });
			const conn = await amqp.connect(rabbit.url);
			try {
				const ch = await conn.createChannel();
				const dlq = `${ns}.DEAD_LETTER`;
				const msg = await eventually(async () => {
					for (;;) {
						const m = await ch.get(dlq, { noAck: false });
						if (!m) return null;
						if (JSON.parse(m.content.toString()).id === id) return m;
						ch.nack(m, false, true);
						return null;
					}
				}, 20_000, "the dead letter");
				expect(msg.properties.deliveryMode, "persistent").to.equal(2);
				const h = msg.properties.headers!;
				expect(h["x-original-channel"]).to.equal(`${ns}.reliability.tested`);
				expect(h["x-original-group"]).to.equal("listener");
				expect(h["x-original-queue"]).to.equal(`listener.${ns}.reliability.tested`);
				expect(h["x-error-message"]).to.equal("this one always fails");
				expect(h["x-error-type"]).to.equal("ALWAYS_FAILS");
				expect(h["x-redelivered-count"]).to.equal(5);
				ch.ack(msg);
			} finally {
				await conn.close();
			}
		});
	});

	describe("the outbox relay's publisher", () => {
		it("publishes again after a RabbitMQ restart and after dropped connections, leaving no stray connection", async function () {
			if (stock) this.skip();
			const prefix = `${ns}-pub`;
			const publisher = new AmqpPublisher(rabbit.url, prefix, { "product.created": ["probe"] });
			const env = (id = randomUUID()) => ({ event_id: id, event_name: "product.created", aggregate_id: id, correlation_id: null, causation_id: null, occurred_at: new Date().toISOString(), version: 1, payload: {} });
			const connections = async () => (await rabbit.ctl("list_connections", "user")).split("\n").filter(l => l.trim() === "guest").length;
			try {
				await publisher.publish([env()]);
				await rabbit.closeConnections();
				await eventually(() => publisher.publish([env()]).then(() => true, () => false), 10_000, "a publish after the connections were closed");
				await restartRabbit();
				await eventually(() => publisher.publish([env()]).then(() => true, () => false), 20_000, "a publish after the restart");
				await eventually(async () => (await Promise.all(brokers.map(b => messagingHealth(b)))).every(h => h.status === "up"), 30_000, "every broker to reconnect");
				const base = await connections();
				// A channel error (an exchange of another type under the event's name) fails the publish and
				// must not leave its connection open.
				const other = await amqp.connect(rabbit.url);
				const ch = await other.createChannel();
				await ch.assertExchange(`${prefix}.product.updated`, "direct", { durable: false });
				for (let i = 0; i < 3; i++) {
					const err = await publisher.publish([{ ...env(), event_name: "product.updated" }]).then(() => null, e => e);
					expect(err, "publishing to a conflicting exchange fails").to.be.instanceOf(Error);
				}
				await publisher.publish([env()]);
				await other.close();
				await sleep(500);
				expect(await connections(), "no connection left behind by the failed publishes").to.equal(base);
				const conn = await amqp.connect(rabbit.url);
				const probe = await (await conn.createChannel()).checkQueue(`probe.${prefix}.product.created`);
				expect(probe.messageCount, "every confirmed event is in the consumer's queue").to.be.at.least(3);
				await conn.close();
			} finally {
				await publisher.close();
			}
		});
	});
});
