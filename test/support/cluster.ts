/**
 * Starts the shop for a test: one broker per group of services, each its own Moleculer node
 * talking to the others over the real AMQP transporter (as separate processes would), with
 * the real Postgres and Redis. `recordEvents` adds an observer consumer group that keeps
 * every envelope it receives on the given channels.
 */
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import type { EventEnvelope } from "../../contracts/events";

let seq = 0;

export interface Cluster {
	brokers: ServiceBroker[];
	/** A broker to call actions from (the first one). */
	broker: ServiceBroker;
	call<T = any>(action: string, params?: any, meta?: any): Promise<T>;
	stop(): Promise<void>;
}

export async function startCluster(groups: string[][], opts: { waitFor?: string[] } = {}): Promise<Cluster> {
	const brokers = groups.map(services => createBroker({ services, nodeID: `${process.env.TEST_RUN_ID}-n${++seq}` }));
	await Promise.all(brokers.map(b => b.start()));
	const all = groups.flat();
	await brokers[0]!.waitForServices(opts.waitFor ?? all, 90_000);
	return {
		brokers,
		broker: brokers[0]!,
		call: (action, params, meta) => brokers[0]!.call(action, params, { meta }),
		stop: async () => {
			await Promise.all(brokers.map(b => b.stop().catch(() => undefined)));
		}
	};
}

export interface EventRecorder {
	events: EventEnvelope[];
	of(name: string, aggregateId?: string): EventEnvelope[];
	waitFor(name: string, predicate?: (e: EventEnvelope) => boolean, timeoutMs?: number): Promise<EventEnvelope>;
}

/** A consumer group of its own on each channel, so it sees every event once per delivery. */
export async function recordEvents(broker: ServiceBroker, names: string[], group = "test-observer"): Promise<EventRecorder> {
	const events: EventEnvelope[] = [];
	const channels: Record<string, any> = {};
	for (const name of names) {
		channels[name] = { group, handler: async (env: EventEnvelope) => void events.push(env) };
	}
	const name = `observer-${++seq}`;
	broker.createService({ name, channels } as any);
	await broker.waitForServices(name);
	await new Promise(r => setTimeout(r, 500)); // the channel queues are declared asynchronously
	return {
		events,
		of: (name, aggregateId) => events.filter(e => e.event_name === name && (!aggregateId || e.aggregate_id === aggregateId)),
		waitFor: (name, predicate = () => true, timeoutMs = 15_000) =>
			eventually(() => events.find(e => e.event_name === name && predicate(e)), timeoutMs, `event ${name}`)
	};
}

/** Polls `probe` until it returns a truthy value; fails with `what` after the timeout. */
export async function eventually<T>(probe: () => T | Promise<T>, timeoutMs = 15_000, what = "condition"): Promise<NonNullable<T>> {
	const until = Date.now() + timeoutMs;
	let last: unknown;
	for (;;) {
		try {
			const v = await probe();
			if (v) return v as NonNullable<T>;
		} catch (err) {
			last = err;
		}
		if (Date.now() > until) throw new Error(`Timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
		await new Promise(r => setTimeout(r, 50));
	}
}

/** The error a call was refused with; fails the test when the call answered instead. */
export async function refusal(p: Promise<unknown>): Promise<any> {
	try {
		await p;
	} catch (err) {
		return err;
	}
	throw new Error("expected a refusal, got an answer");
}

export interface Shop {
	cluster: Cluster;
	events: EventRecorder;
	/** A plain connection to the test database, for asserting on tables directly. */
	db: import("knex").Knex;
	call<T = any>(action: string, params?: any, meta?: any): Promise<T>;
}

/**
 * The setup most suites share: the services in `groups` over the real transporter, an event
 * recorder on `eventNames`, and a database handle — started before the suite, stopped after it.
 */
export function useShop(groups: string[][], eventNames: string[]): Shop {
	const shop = { call: (action: string, params?: any, meta?: any) => shop.cluster.call(action, params, meta) } as Shop;
	before(async () => {
		const { default: knexFactory } = await import("knex");
		shop.cluster = await startCluster(groups, { waitFor: [...new Set(groups.flat())] });
		shop.events = await recordEvents(shop.cluster.broker, eventNames);
		shop.db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
	});
	after(async () => {
		await shop.cluster?.stop();
		await shop.db?.destroy();
	});
	return shop;
}

/** Counts the calls a node's local action handles (instrumentation of the test, not of the code). */
export function countCalls(broker: ServiceBroker, action: string) {
	const endpoint = (broker as any)._getLocalActionEndpoint(action);
	const original = endpoint.action.handler;
	const counter = { count: 0, restore: () => void (endpoint.action.handler = original) };
	endpoint.action.handler = (ctx: unknown) => {
		counter.count++;
		return original(ctx);
	};
	return counter;
}
