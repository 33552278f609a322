/**
 * Moleculer's AMQP transporter (moleculer 0.15.2, `src/transporters/amqp.js`) with three
 * repairs, registered in moleculer.config.ts instead of the built-in "AMQP" type:
 *
 * 1. **An ack goes to the channel the message came from, or nowhere.** The built-in acks an
 *    action request on `this.channel` once its handler is done. When RabbitMQ restarted in the
 *    meantime, `this.channel` is a new channel that never delivered that tag: RabbitMQ answers
 *    406 PRECONDITION_FAILED (unknown delivery tag) and closes the new channel. Here every
 *    consumer remembers its channel; a message whose channel is gone is not acked — RabbitMQ
 *    already put it back in its queue and redelivers it (calls carry idempotency keys).
 * 2. **A channel that closes by itself is reopened** (the built-in only logs it and keeps
 *    `channel = null` for good): a new channel on the same connection, then every
 *    subscription again. If that fails, the connection is closed and Moleculer's own
 *    reconnect loop (every 5 s) rebuilds everything.
 * 3. **No silent drop.** The built-in `send()` resolves without sending while it has no
 *    channel. Here a request or event then fails at once with a retryable 503
 *    (`SERVICE_UNAVAILABLE`), so callers retry or answer 503 instead of waiting for a timeout.
 * 4. **A stopping node stops taking requests first.** `stopTakingRequests()` cancels the
 *    consumers of the shared request queues (`REQB.<action>`) before Moleculer marks the broker
 *    `stopping` (from then on it answers every request that still arrives with
 *    ServiceNotAvailable, a 503 at the gateway). Requests already taken finish and are answered;
 *    the ones still queued go to another replica, or wait for the restarted one. While the
 *    cancels are under way (one round trip each, serialized on the channel: 50–450 ms for
 *    40 queues under load) the node still handles what it is sent; a request that would still
 *    arrive once every consumer is cancelled is handed back unread (nack with requeue) for
 *    another replica, never answered "not available".
 *
 * 5. **A request to a shared queue that does not exist yet waits in it.** A node answers another
 *    node's DISCOVER with its INFO at once, while the shared queues of the services it has just
 *    registered may still be being made; the other node then sends requests to a queue RabbitMQ
 *    does not know, and RabbitMQ drops them (the caller's 504, 15 s later). That happens only
 *    to the first replica of a service in a namespace (shared queues outlive their consumers),
 *    but a request is lost. Here they are published `mandatory`: RabbitMQ hands an unroutable one
 *    back, and it is sent again once its queue is declared, to wait there for its consumer.
 *
 * `usable()` tells whether this process can talk to RabbitMQ right now (see messaging-health.ts).
 */
import { Errors, Transporters } from "moleculer";
import type { ConfirmChannel } from "amqplib";

const AmqpTransporter = Transporters.AMQP as unknown as new (opts: any) => any;
const USER_PACKETS = new Set(["REQ", "EVENT", "PING"]);

/** The broker connection is not usable from this process right now; retry shortly. */
export class MessageBrokerUnavailableError extends Errors.MoleculerRetryableError {
	constructor(what = "RabbitMQ") {
		super(`${what} is not reachable from this process right now; retry shortly`, 503, "SERVICE_UNAVAILABLE");
		this.stack = "";
	}
}

export class ReliableAmqpTransporter extends AmqpTransporter {
	/** Counts the channels opened: logs and tests can tell a reopened channel. */
	channelGeneration = 0;
	private reopening: Promise<void> | null = null;
	/** Consumer tags of the shared request queues on the current channel. */
	private requestConsumers: string[] = [];
	/** False once the node began to stop (stopTakingRequests): no new consumer of a shared queue. */
	takingRequests = true;
	/** True once every consumer of a shared queue is cancelled: a request still arriving goes back. */
	private handingBack = false;
	private stoppingRequests: Promise<void> | null = null;

	connect(errorCallback: (err: unknown) => void): Promise<void> {
		// eslint-disable-next-line @typescript-eslint/no-require-imports
		const amqp = require("amqplib");
		this.connectAttempt = (this.connectAttempt || 0) + 1;
		const uri: string = this.opts.url[(this.connectAttempt - 1) % this.opts.url.length];
		return new Promise<void>((resolve, reject) => {
			let resolved = false;
			let failed = false;
			// Before the first success the caller's promise fails; afterwards Moleculer's
			// reconnect callback takes over (it starts one reconnect loop per failure).
			const fail = (err: unknown) => {
				if (failed) return;
				failed = true;
				this.connected = false;
				if (resolved) errorCallback(err);
				else reject(err);
			};
			amqp
				.connect(uri, { ...(this.opts.socketOptions || {}), servername: new URL(uri).hostname })
				.then(async (connection: any) => {
					this.connection = connection;
					this.logger.info("AMQP is connected.");
					connection
						.on("error", (err: Error) => {
							this.logger.error("AMQP connection error.", err.message);
							this.broker.broadcastLocal("$transporter.error", { error: err, module: "transporter", type: "failedConnection" });
						})
						.on("close", (err: unknown) => {
							if (this.connection === connection) {
								this.connection = null;
								this.channel = null;
							}
							this.connected = false;
							if (this.connectionDisconnecting) return this.logger.info("AMQP connection is closed gracefully.");
							this.logger.warn("AMQP connection is closed; reconnecting.");
							fail(err ?? new Error("AMQP connection closed"));
						})
						.on("blocked", (reason: string) => this.logger.warn("AMQP connection is blocked.", reason))
						.on("unblocked", () => this.logger.info("AMQP connection is unblocked."));

					await this.openChannel(connection);
					this.connectionCount += 1;
					const isReconnect = this.connectionCount > 1;
					// Subscriptions are not persistent in RabbitMQ: make them again after a reconnect.
					if (isReconnect) await this.transit.makeSubscriptions();
					await this.onConnected(isReconnect);
					resolved = true;
					resolve();
				})
				.catch((err: Error) => {
					this.logger.warn("AMQP failed to connect:", err.message);
					fail(err);
				});
		});
	}

	/** Opens the working channel on `connection` and watches it. */
	private async openChannel(connection: any): Promise<void> {
		const channel = await connection.createChannel();
		const generation = ++this.channelGeneration;
		channel
			.on("error", (err: Error) => {
				this.logger.error(`AMQP channel #${generation} error.`, err.message);
				this.broker.broadcastLocal("$transporter.error", { error: err, module: "transporter", type: "failedChannel" });
			})
			.on("close", () => {
				if (this.channel !== channel) return; // an older channel: nothing to undo
				this.channel = null;
				if (this.channelDisconnecting || this.connectionDisconnecting) return this.logger.info("AMQP channel is closed gracefully.");
				if (this.connection !== connection) return; // the connection is gone: the reconnect loop rebuilds all
				this.reopenChannel(connection, generation);
			})
			.on("return", (msg: any) => this.sendReturned(channel, msg));
		await channel.prefetch(this.opts.prefetch);
		this.requestConsumers = [];
		this.channel = channel;
		this.logger.info(`AMQP channel #${generation} is created.`);
	}

	private reopenChannel(connection: any, generation: number): void {
		if (this.reopening) return;
		this.reopening = (async () => {
			try {
				await new Promise(r => setTimeout(r, 100));
				if (this.connection !== connection || this.connectionDisconnecting) return; // the connection went too: reconnecting
				this.logger.warn(`AMQP channel #${generation} closed by itself; reopening it.`);
				await this.openChannel(connection);
				await this.transit.makeSubscriptions();
				await this.makeBalancedSubscriptions();
				this.logger.info(`AMQP channel #${this.channelGeneration} reopened with every subscription.`);
			} catch (err) {
				this.logger.error("AMQP channel could not be reopened; closing the connection to reconnect.", (err as Error).message);
				await connection.close().catch(() => undefined);
			}
		})().finally(() => (this.reopening = null));
	}

	/**
	 * Acks or nacks a request on the channel that delivered it; if that channel is gone, RabbitMQ
	 * redelivers it. A request from a shared queue (`balanced`) that reaches this node after it
	 * cancelled all its consumers is handed back unread (nack, requeue) for another replica.
	 */
	_consumeCB(cmd: string, needAck = false, balanced = false) {
		const channel: ConfirmChannel | null = this.channel;
		const settle = (msg: any, ok: boolean) => {
			if (!channel || channel !== this.channel) {
				this.logger.debug(`Not acking ${cmd} #${msg.fields.deliveryTag}: its channel is gone, RabbitMQ redelivers it.`);
				return;
			}
			try {
				if (ok) channel.ack(msg);
				else channel.nack(msg);
			} catch (err) {
				this.logger.warn(`Could not ${ok ? "ack" : "nack"} ${cmd} #${msg.fields.deliveryTag}.`, (err as Error).message);
			}
		};
		return (msg: any) => {
			if (msg === null) return this.logger.warn(`RabbitMQ cancelled a ${cmd} consumer (its queue was deleted?); the next subscription makes it again.`);
			if (balanced && this.handingBack) {
				// A consumer that outlived the cancels (made while they ran) is cancelled now, so it cannot take the request back again.
				channel?.cancel(msg.fields.consumerTag).catch(() => undefined);
				return settle(msg, false);
			}
			const result = this.receive(cmd, msg.content);
			if (!needAck) return result;
			if (result && typeof result.then === "function") {
				return result.then(
					() => settle(msg, true),
					(err: Error) => {
						this.logger.error("Message handling error.", err);
						settle(msg, false);
					}
				);
			}
			settle(msg, true);
			return result;
		};
	}

	/** The shared queue of an action's requests (`REQB.<action>`), consumed with acks; the consumer is remembered. */
	subscribeBalancedRequest(action: string) {
		const channel = this.channel;
		if (!channel || !this.takingRequests) return;
		const queue = `${this.prefix}.REQB.${action}`;
		return channel
			.assertQueue(queue, this._getQueueOptions("REQ", true))
			.then(() => channel.consume(queue, this._consumeCB("REQ", true, true), this.opts.consumeOptions))
			.then((ok: { consumerTag: string }) => {
				// Made while the node began to stop: cancelled at once, not left taking requests.
				if (!this.takingRequests) return channel.cancel(ok.consumerTag).then(() => undefined, () => undefined);
				if (channel === this.channel) this.requestConsumers.push(ok.consumerTag);
			});
	}

	/** A stopping node takes no more requests from the shared queues; those it holds finish. Once, however often it is asked. */
	stopTakingRequests(): Promise<void> {
		this.stoppingRequests ??= (async () => {
			this.takingRequests = false;
			const channel = this.channel;
			const tags = this.requestConsumers.splice(0);
			if (channel) await Promise.all(tags.map(tag => channel.cancel(tag).catch(() => undefined)));
			this.handingBack = true;
			if (tags.length) this.logger.info(`Stopped taking requests from ${tags.length} shared queue(s).`);
		})();
		return this.stoppingRequests;
	}

	prepublish(packet: any): Promise<void> {
		return super.prepublish(packet).catch((err: any) => {
			throw err instanceof Errors.BrokerDisconnectedError ? new MessageBrokerUnavailableError() : err;
		});
	}

	send(topic: string, data: Buffer, { balanced, packet }: { balanced?: boolean; packet: any }): Promise<void> {
		const channel = this.channel;
		if (!channel) {
			// Heartbeats, INFO and the like are skipped as the built-in does; what a caller waits for fails now.
			return USER_PACKETS.has(packet.type) ? Promise.reject(new MessageBrokerUnavailableError()) : Promise.resolve();
		}
		try {
			if (balanced) channel.sendToQueue(topic, data, { ...this.opts.messageOptions, mandatory: true });
			else if (packet.target != null) channel.sendToQueue(topic, data, this.opts.messageOptions);
			else channel.publish(topic, "", data, this.opts.messageOptions);
			return Promise.resolve();
		} catch (err) {
			// amqplib throws at once on a channel that is closing.
			this.logger.debug("AMQP send failed.", (err as Error).message);
			return USER_PACKETS.has(packet.type) ? Promise.reject(new MessageBrokerUnavailableError()) : Promise.resolve();
		}
	}

	/**
	 * A message RabbitMQ could not route: a request (or balanced event) to a shared queue nobody
	 * declared yet. The queue is declared as its consumer will declare it, and the message sent
	 * again: it waits there for its consumer (the caller's timeout still applies).
	 */
	private sendReturned(channel: ConfirmChannel, msg: any): void {
		const queue: string = msg.fields.routingKey;
		const kind = queue.startsWith(`${this.prefix}.REQB.`) ? "REQ" : queue.startsWith(`${this.prefix}.EVENTB.`) ? "EVENTLB" : null;
		if (!kind || msg.fields.exchange !== "") {
			this.logger.warn(`AMQP returned a message for '${queue}' (${msg.fields.replyText}); it is dropped.`);
			return;
		}
		this.logger.info(`AMQP: shared queue '${queue}' did not exist yet; declared it and sent the message again.`);
		channel
			.assertQueue(queue, this._getQueueOptions(kind, true))
			.then(() => channel.sendToQueue(queue, msg.content, { ...this.opts.messageOptions, mandatory: true }))
			.catch((err: Error) => this.logger.warn(`AMQP could not declare '${queue}' for a returned message; it is dropped.`, err.message));
	}

	/** True while the connection and the working channel are open and subscriptions are in place. */
	usable(): boolean {
		return !!(this.connected && this.connection && this.channel && !this.reopening);
	}
}
