/**
 * The saga store's suite (test/support/saga-store-suite.ts) against a local three-master
 * Redis Cluster started for this file and removed after it: every script of a saga stays in
 * one slot, the sharded indexes are read over all nodes, and the sagas spread over the masters.
 */
import { expect } from "chai";
import { Cluster } from "ioredis";
import { RedisSagaStore, sagaKeys, SagaRecord } from "../../sagas";
import { LocalRedisCluster, startRedisCluster } from "../support/redis-cluster";
import { sagaStoreSuite } from "../support/saga-store-suite";

describe("Redis saga store on Redis Cluster", function () {
	this.timeout(60_000);
	let cluster: LocalRedisCluster | undefined;

	before(async () => {
		cluster = await startRedisCluster();
	});
	after(async () => {
		await cluster?.stop();
	});

	const connect = () => {
		const redis = new Cluster(cluster!.nodes, { redisOptions: { maxRetriesPerRequest: 3 } });
		redis.on("error", () => undefined); // a connection cut on purpose (a replica dying) complains; its callers see the errors
		return redis;
	};
	const keysOnAllMasters = async (redis: Cluster, pattern: string) => (await Promise.all(redis.nodes("master").map(node => node.keys(pattern)))).flat();

	sagaStoreSuite("the store's suite", () => ({ connect, keys: (redis, pattern) => keysOnAllMasters(redis as Cluster, pattern) }));

	it("spreads the sagas of one store over the masters, and finds them all again", async () => {
		const redis = connect();
		const prefix = `spread-${Math.random().toString(36).slice(2)}:`;
		try {
			const store = new RedisSagaStore(redis, { prefix });
			const now = new Date().toISOString();
			const ids = Array.from({ length: 40 }, (_, i) => `00000000-0000-4000-8000-${String(i + 1).padStart(12, "0")}`);
			for (const id of ids) {
				const rec: SagaRecord = { id, type: "t", state: "started", status: "running", step: 0, stepStatus: "pending", data: {}, version: 1, attempts: 0, completedSteps: [], compensatedSteps: [], announced: false, history: [], createdAt: now, updatedAt: now };
				await store.create(rec);
			}
			const perMaster = await Promise.all(redis.nodes("master").map(node => node.keys(`${prefix}saga:*`)));
			expect(perMaster.filter(keys => keys.length > 0).length).to.be.at.least(2);
			expect(perMaster.flat().sort()).to.deep.equal(ids.map(id => sagaKeys(prefix).record(id)).sort());
			expect((await store.listUnfinished()).sort()).to.deep.equal(ids);
			expect((await store.list({ limit: 100 })).total).to.equal(40);
		} finally {
			redis.disconnect();
		}
	});
});
