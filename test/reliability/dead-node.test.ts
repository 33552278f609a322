/**
 * A node killed without a goodbye (SIGKILL) leaves the other nodes' registries within ~3 s
 * (infra/discoverer.ts: heartbeats stamped in milliseconds, silent nodes looked for every 250 ms;
 * Moleculer's own discoverer took 3–7 s with the same heartbeat settings), and a node that is
 * only slow to beat comes back by itself with its next heartbeat.
 */
import { expect } from "chai";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import { eventually } from "../support/cluster";
import { writeReliabilityFigures } from "../support/reliability-doc";
import { spawnServices, ServiceProcess } from "../support/processes";

const ROUNDS = 3;

describe("a dead node leaves the registry within ~3 s", function () {
	this.timeout(240_000);
	let client: ServiceBroker;
	const procs: ServiceProcess[] = [];
	const figures: number[] = [];

	before(async () => {
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-dead-node-client` });
		await client.start();
	});
	after(async () => {
		await client?.stop().catch(() => undefined);
		await Promise.all(procs.map(p => p.kill()));
	});

	it(`SIGKILL, ${ROUNDS} times: the node is gone from the registry within 3.5 s of its death`, async () => {
		for (let round = 1; round <= ROUNDS; round++) {
			const nodeID = `${process.env.TEST_RUN_ID}-dead-node-${round}-${Date.now().toString(36)}`;
			const p = spawnServices(["addons"], { NODE_ID: nodeID });
			procs.push(p);
			await eventually(() => client.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === "addons" && s.nodeID === nodeID), 90_000, "the node up");
			// Some beats first, and a kill at a random point between two of them.
			await new Promise(r => setTimeout(r, 2000 + Math.random() * 1000));
			await p.kill("SIGKILL");
			const killedAt = Date.now();
			await eventually(() => !client.registry.nodes.get(nodeID)?.available, 15_000, "the dead node to leave the registry");
			figures.push(Date.now() - killedAt);
		}
		const text = figures.map(ms => `${(ms / 1000).toFixed(1)} s`).join(", ");
		console.log(`\n      SIGKILLed node left the registry after: ${text}\n`);
		writeReliabilityFigures("dead-node", `Last run (${new Date().toISOString().slice(0, 10)}): a SIGKILLed node left another node's registry **${text}** after its death (${ROUNDS} kills).`);
		for (const ms of figures) expect(ms, `left the registry ${ms} ms after the kill`).to.be.at.most(3500);
	});

	it("a node whose heartbeats stop for a while is dropped, then back by itself with its next heartbeat", async () => {
		const nodeID = `${process.env.TEST_RUN_ID}-slow-node-${Date.now().toString(36)}`;
		const p = spawnServices(["addons"], { NODE_ID: nodeID });
		procs.push(p);
		await eventually(() => client.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === "addons" && s.nodeID === nodeID), 90_000, "the node up");
		// SIGSTOP: the process is frozen (no beat, no goodbye) but alive, as a stalled event loop is.
		p.child.kill("SIGSTOP");
		await eventually(() => !client.registry.nodes.get(nodeID)?.available, 15_000, "the frozen node to leave the registry");
		p.child.kill("SIGCONT");
		await eventually(() => client.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === "addons" && s.nodeID === nodeID), 20_000, "the node back after its next heartbeat");
		expect(await client.call("addons.health", {}, { nodeID })).to.include({ status: "up" });
	});
});
