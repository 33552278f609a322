/**
 * The AMQP adapter of @moleculer/channels (0.1.8, `src/adapters/amqp.js`), supervised.
 * moleculer.config.ts passes an instance of it to the channels middleware instead of the
 * built-in "AMQP" type. What changes, and why:
 *
 * - **Acks go to the channel that delivered the message, or nowhere.** The built-in acks on
 *   `this.channel`: a handler that finished after a reconnect acked an old delivery tag on
 *   the new channel, RabbitMQ closed it (406 PRECONDITION_FAILED) and every consumer of the
 *   process fell silent. A message whose channel is gone was already requeued by RabbitMQ; it
 *   comes again and the inbox makes the second handling a no-op.
 * - **A channel that closes by itself is reopened** and every consumer subscribed again (the
 *   built-in only logs it). A lost connection is reconnected every 2 s, as before.
 * - **Retries and dead letters are never lost**: the channel is a confirm channel, a retried
 *   or dead-lettered message is republished `persistent` and the original is acked only
 *   after RabbitMQ confirmed the copy (the built-in published transient copies without
 *   confirms, then acked).
 * - **A dead letter says where it came from and why**: headers `x-original-channel`,
 *   `x-original-group`, `x-original-queue`, `x-redelivered-count`, `x-error-name`,
 *   `x-error-message`, `x-error-code`, `x-error-type`, `x-error-timestamp` (the names newer
 *   @moleculer/channels releases use), plus the message's own properties.
 * - Every declaration is awaited (the built-in fired some without waiting, so a failure was
 *   an unhandled rejection).
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const AmqpAdapter = require("@moleculer/channels/src/adapters/amqp") as new (opts: any) => any;
import amqp, { ConfirmChannel, ConsumeMessage } from "amqplib";
import { Errors } from "moleculer";

const HEADER_REDELIVERED_COUNT = "x-redelivered-count";

export class SupervisedAmqpAdapter extends AmqpAdapter {
	channelGeneration = 0;
	private reopening: Promise<void> | null = null;

	/** Connects, retrying every 2 s (as the built-in, with a one-line log instead of a stack each time). */
	connect(): Promise<void> {
		return new Promise(resolve => {
			const attempt = () =>
				this.tryConnect().then(resolve, (err: Error) => {
					this.logger.warn(`AMQP not reachable (${err.message}); retrying in 2 s.`);
					setTimeout(() => {
						if (!this.stopping) attempt();
					}, 2000);
				});
			attempt();
		});
	}

	async tryConnect(): Promise<void> {
		const urls: string[] = this.opts.amqp.url;
		this.connectAttempt = (this.connectAttempt || 0) + 1;
		const uri = urls[(this.connectAttempt - 1) % urls.length]!;
		const connection = await amqp.connect(uri, this.opts.amqp.socketOptions);
		this.connection = connection;
		this.connected = true;
		connection
			.on("error", (err: Error) => this.logger.error("AMQP connection error.", err.message))
			.on("close", () => {
				if (this.connection !== connection) return;
				this.connected = false;
				this.connection = null;
				this.channel = null;
				if (this.stopping) return this.logger.info("AMQP connection is closed gracefully.");
				this.logger.warn("AMQP connection is closed; reconnecting in 2 s.");
				setTimeout(() => {
					if (!this.stopping) this.connect();
				}, 2000);
			})
			.on("blocked", (reason: string) => this.logger.warn("AMQP connection is blocked.", reason))
			.on("unblocked", () => this.logger.info("AMQP connection is unblocked."));
		this.logger.info("AMQP is connected.");
		try {
			await this.openChannel(connection);
			this.connectionCount++;
			if (this.connectionCount > 1) await this.resubscribeAllChannels();
		} catch (err) {
			// Half-connected is not connected: close it and let connect() try again.
			await connection.close().catch(() => undefined);
			throw err;
		}
	}

	private async openChannel(connection: amqp.ChannelModel): Promise<void> {
		const channel = await connection.createConfirmChannel();
		const generation = ++this.channelGeneration;
		channel
			.on("error", (err: Error) => this.logger.error(`AMQP channel #${generation} error.`, err.message))
			.on("close", () => {
				if (this.channel !== channel) return;
				this.channel = null;
				if (this.stopping || this.connection !== connection) return;
				this.reopenChannel(connection, generation);
			})
			.on("return", (msg: unknown) => this.logger.warn("AMQP channel returned a message.", msg));
		if (this.opts.maxInFlight != null) await channel.prefetch(this.opts.maxInFlight);
		this.channel = channel;
		this.logger.info(`AMQP channel #${generation} created.`);
	}

	private reopenChannel(connection: amqp.ChannelModel, generation: number): void {
		if (this.reopening) return;
		this.reopening = (async () => {
			try {
				await new Promise(r => setTimeout(r, 100));
				if (this.connection !== connection || this.stopping) return; // the connection went too: reconnecting
				this.logger.warn(`AMQP channel #${generation} closed by itself; reopening it.`);
				await this.openChannel(connection);
				await this.resubscribeAllChannels();
				this.logger.info(`AMQP channel #${this.channelGeneration} reopened with every consumer.`);
			} catch (err) {
				this.logger.error("AMQP channel could not be reopened; closing the connection to reconnect.", (err as Error).message);
				await connection.close().catch(() => undefined);
			}
		})().finally(() => (this.reopening = null));
	}

	async subscribe(chan: any): Promise<void> {
		const channel: ConfirmChannel = this.channel;
		if (!channel) throw new Error(`No AMQP channel to subscribe '${chan.name}' on`);
		if (chan.maxRetries == null) chan.maxRetries = this.opts.maxRetries;
		// Resolved once: the built-in prefixed the dead-letter names again on every resubscription.
		if (!chan.$deadLetteringResolved) {
			chan.$deadLetteringResolved = true;
			chan.deadLettering = { ...this.opts.deadLettering, ...chan.deadLettering };
			if (chan.deadLettering.enabled) {
				chan.deadLettering.queueName = this.addPrefixTopic(chan.deadLettering.queueName);
				chan.deadLettering.exchangeName = this.addPrefixTopic(chan.deadLettering.exchangeName ?? "DEAD_LETTER");
			}
		}
		const amqpOpts = this.opts.amqp;
		if (chan.deadLettering.enabled) {
			this.assertedExchanges.add(chan.deadLettering.exchangeName);
			await channel.assertExchange(chan.deadLettering.exchangeName, "fanout", { ...amqpOpts.exchangeOptions, ...chan.deadLettering.exchangeOptions });
			await channel.assertQueue(chan.deadLettering.queueName, { ...amqpOpts.queueOptions, ...chan.deadLettering.queueOptions });
			await channel.bindQueue(chan.deadLettering.queueName, chan.deadLettering.exchangeName, "");
		}
		const queueName = `${chan.group}.${chan.name}`;
		await channel.assertExchange(chan.name, "fanout", { ...amqpOpts.exchangeOptions, ...chan.amqp?.exchangeOptions });
		await channel.assertQueue(queueName, { ...amqpOpts.queueOptions, ...chan.amqp?.queueOptions });
		await channel.bindQueue(queueName, chan.name, "");
		this.initChannelActiveMessages(chan.id, false);
		const res = await channel.consume(queueName, this.createConsumerHandler(chan), { ...amqpOpts.consumerOptions, ...chan.amqp?.consumerOptions });
		this.subscriptions.set(chan.id, { chan, consumerTag: res.consumerTag });
	}

	/** Stopping while RabbitMQ is away: there is no consumer left to cancel. */
	async unsubscribe(chan: any): Promise<void> {
		if (this.channel) return super.unsubscribe(chan);
		chan.unsubscribing = true;
	}

	/** Publishes on `channel` and resolves once RabbitMQ confirmed the message. */
	private confirmed(channel: ConfirmChannel, exchange: string, routingKey: string, content: Buffer, options: amqp.Options.Publish): Promise<void> {
		return new Promise((resolve, reject) => {
			try {
				channel.publish(exchange, routingKey, content, options, err => (err ? reject(err) : resolve()));
			} catch (err) {
				reject(err);
			}
		});
	}

	createConsumerHandler(chan: any) {
		const channel: ConfirmChannel = this.channel;
		const queueName = `${chan.group}.${chan.name}`;
		/** The delivering channel is the only one that may settle a delivery. */
		const alive = () => channel === this.channel;
		const settle = (msg: ConsumeMessage, how: "ack" | "drop") => {
			if (!alive()) return this.logger.debug(`Not settling a message of '${queueName}': its channel is gone, RabbitMQ redelivers it.`);
			try {
				if (how === "ack") channel.ack(msg);
				else channel.nack(msg, false, false);
			} catch (err) {
				this.logger.warn(`Could not settle a message of '${queueName}'.`, (err as Error).message);
			}
		};
		return async (msg: ConsumeMessage | null) => {
			if (!msg || chan.unsubscribing) return;
			const id = msg.properties.correlationId || `${msg.fields.consumerTag}:${msg.fields.deliveryTag}`;
			this.addChannelActiveMessages(chan.id, [id]);
			try {
				await chan.handler(this.serializer.deserialize(msg.content), msg);
				settle(msg, "ack");
			} catch (err: any) {
				this.metricsIncrement("moleculer.channels.messages.errors.total", chan);
				this.logger.warn(`AMQP message processing error in '${chan.name}' queue.`, err?.message ?? err);
				const headers = msg.properties.headers ?? {};
				const redeliveries = Number(headers[HEADER_REDELIVERED_COUNT] ?? 0) + 1;
				try {
					if (!alive()) return settle(msg, "ack");
					if (chan.maxRetries && redeliveries < chan.maxRetries) {
						this.metricsIncrement("moleculer.channels.messages.retries.total", chan);
						await this.confirmed(channel, "", queueName, msg.content, {
							...this.keptProperties(msg),
							headers: { ...headers, [HEADER_REDELIVERED_COUNT]: redeliveries }
						});
						settle(msg, "ack");
					} else if (chan.deadLettering.enabled) {
						this.logger.warn(`Moving a message of '${queueName}' to '${chan.deadLettering.queueName}' after ${redeliveries} attempt(s).`);
						await this.confirmed(channel, chan.deadLettering.exchangeName, "", msg.content, {
							...this.keptProperties(msg),
							headers: {
								...headers,
								[HEADER_REDELIVERED_COUNT]: redeliveries,
								"x-original-channel": chan.name,
								"x-original-group": chan.group,
								"x-original-queue": queueName,
								"x-error-name": String(err?.name ?? "Error"),
								"x-error-message": String(err?.message ?? err),
								"x-error-code": String(err?.code ?? ""),
								"x-error-type": String(err?.type ?? ""),
								"x-error-timestamp": new Date().toISOString()
							}
						});
						this.metricsIncrement("moleculer.channels.messages.deadLettering.total", chan);
						settle(msg, "ack");
					} else {
						this.logger.error(`Dropping a message of '${queueName}' after ${redeliveries} attempt(s) (no dead-letter queue).`);
						settle(msg, "drop");
					}
				} catch (publishErr) {
					// The copy was not confirmed: leave the original unacked; it comes back when its channel goes.
					this.logger.warn(`Could not republish a message of '${queueName}'; it stays in its queue.`, (publishErr as Error).message);
				}
			} finally {
				this.removeChannelActiveMessages(chan.id, [id]);
			}
		};
	}

	private keptProperties(msg: ConsumeMessage): amqp.Options.Publish {
		const p = msg.properties;
		return { persistent: true, messageId: p.messageId, correlationId: p.correlationId, type: p.type, contentType: p.contentType, timestamp: p.timestamp };
	}

	/** `broker.sendToChannel` over AMQP: persistent and confirmed (not used by the outbox relay, which has its own publisher). */
	async publish(channelName: string, payload: unknown, opts: any = {}): Promise<void> {
		if (this.stopping) return;
		const channel: ConfirmChannel | null = this.channel;
		if (!this.connected || !channel) {
			throw new Errors.MoleculerRetryableError("The channels' AMQP connection is not usable right now", 503, "SERVICE_UNAVAILABLE");
		}
		if (!this.assertedExchanges.has(channelName)) {
			await channel.assertExchange(channelName, "fanout", { ...this.opts.amqp.exchangeOptions, ...this.opts.amqp.publishAssertExchange?.exchangeOptions });
			this.assertedExchanges.add(channelName);
		}
		const data = opts.raw ? payload : this.serializer.serialize(payload);
		await this.confirmed(channel, channelName, opts.routingKey || "", data, {
			persistent: opts.persistent ?? true,
			expiration: opts.ttl,
			priority: opts.priority,
			correlationId: opts.correlationId,
			headers: opts.headers,
			...this.opts.amqp.messageOptions
		});
	}

	/** True while the connection and the consuming channel are open. */
	usable(): boolean {
		return !!(this.connected && this.connection && this.channel && !this.reopening);
	}
}
