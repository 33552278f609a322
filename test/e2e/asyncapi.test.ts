/**
 * GET /api/asyncapi.json on a running shop: served by the gateway, valid AsyncAPI 3, with the
 * exchanges and queues as RabbitMQ names them in this shop (its namespace) and the consumers
 * that the running services declare.
 */
import { expect } from "chai";
import type { AddressInfo } from "node:net";
import { Parser } from "@asyncapi/parser";
import { Cluster, startCluster } from "../support/cluster";
import { Http } from "../support/http";

describe("GET /api/asyncapi.json", function () {
	this.timeout(90_000);
	let cluster: Cluster;
	let http: Http;

	before(async () => {
		cluster = await startCluster([["api"], ["inventory", "notifications", "orders"]]);
		const svc: any = cluster.brokers[0]!.getLocalService("api");
		http = new Http(`http://127.0.0.1:${(svc.server.address() as AddressInfo).port}`);
	});
	after(() => cluster?.stop());

	it("answers a valid AsyncAPI 3 document without a token", async () => {
		const res = await http.get("/api/asyncapi.json");
		expect(res.status).to.equal(200);
		expect(res.headers.get("content-type")).to.match(/application\/json/);
		const { document, diagnostics } = await new Parser().parse(JSON.stringify(res.body));
		expect(diagnostics.filter(d => d.severity === 0).map(d => d.message)).to.deep.equal([]);
		expect(document!.version()).to.equal("3.0.0");
	});

	it("names this shop's exchanges and queues, with the consumers of the services that run", async () => {
		const doc = (await http.get("/api/asyncapi.json")).body;
		const ns = process.env.NAMESPACE!;
		const addresses = Object.values<any>(doc.channels).map(c => c.address);
		expect(addresses).to.include(`${ns}.product.created`);
		expect(addresses).to.include(`inventory.${ns}.product.created`);
		expect(addresses).to.include(`orders.${ns}.customer.erased`);
		expect(addresses).to.include(`notifications.${ns}.customer.erased`);
		expect(addresses).to.include("integration");
		const consumed = Object.values<any>(doc.components.messages).find(m => m.name === "customer.erased")["x-consumed-by"];
		expect(consumed).to.deep.equal(["notifications", "orders"]);
	});
});
