/**
 * A dead inventory is not an empty warehouse. Inventory runs as its own OS process, the rest of the
 * shop as another; inventory is SIGKILLed (no goodbye to the other nodes):
 * - the catalog answers from its own copy of the stock (kept from inventory's events), never 0;
 * - carts answer a retryable 503, never a false 409 OUT_OF_STOCK;
 * - the dead node leaves the registry within the heartbeat settings (measured and printed);
 * - once inventory is back, the stock is known again and the cart takes the item.
 */
import { expect } from "chai";
import type { ServiceBroker } from "moleculer";
import { createBroker } from "../../bin/broker";
import { SERVICE_NAMES } from "../../services";
import { eventually } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { freePort } from "../support/private-redis";
import { spawnServices, ServiceProcess } from "../support/processes";
import { adminLogin, productInStock, verifiedCustomer } from "../support/shop";

const OTHERS = SERVICE_NAMES.filter(name => name !== "inventory");

describe("inventory killed: stock unknown, not zero", function () {
	this.timeout(240_000);
	let inventory: ServiceProcess | null = null, rest: ServiceProcess;
	let client: ServiceBroker;
	let http: Http;
	const figures: string[] = [];
	let firstNode: string;

	const startInventory = async () => {
		const nodeID = `${process.env.TEST_RUN_ID}-inventory-${Date.now().toString(36)}`;
		inventory = spawnServices(["inventory"], { NODE_ID: nodeID });
		await eventually(() => client.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === "inventory" && s.nodeID === nodeID), 60_000, "inventory up");
		return nodeID;
	};

	before(async () => {
		const port = String(await freePort());
		http = new Http(`http://127.0.0.1:${port}`);
		rest = spawnServices(OTHERS, { PORT: port });
		client = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-inv-down-client` });
		await client.start();
		// Services that depend on inventory (checkout) start only once it is there.
		firstNode = await startInventory();
		await client.waitForServices(OTHERS, 120_000);
	});

	after(async () => {
		if (figures.length) console.log(`\n      Inventory down:\n${figures.map(f => `        ${f}`).join("\n")}\n`);
		await client?.stop().catch(() => undefined);
		await Promise.all([inventory?.kill(), rest?.kill()]);
	});

	it("catalog: its copy of the stock, never 0 (or 503); cart: 503, never OUT_OF_STOCK; the dead node leaves the registry within seconds; all well again after its restart", async () => {
		const nodeID = firstNode;
		const admin = await adminLogin(http);
		const product = await productInStock(http, admin, { stock: 10_000_000 });
		const customer = await verifiedCustomer(http, admin);
		const shown = expectStatus(await http.get(`/api/products/${product.id}`), 200);
		expect(shown).to.include({ available: 10_000_000 });
		const item = expectStatus(await http.post("/api/cart/items", { productId: product.id, quantity: 1 }, customer.token), 200).items[0];

		await inventory!.kill("SIGKILL");
		const killedAt = Date.now();
		const seen: string[] = [];
		const check = async (phase: string) => {
			const one = await http.get(`/api/products/${product.id}`);
			const list = await http.get("/api/products?pageSize=100");
			const add = await http.post("/api/cart/items", { productId: product.id, quantity: 1 }, customer.token);
			const change = await http.patch(`/api/cart/items/${item.id}`, { quantity: 3 }, customer.token);
			for (const [what, a] of [["GET product", one], ["GET products", list]] as const) {
				if (a.status === 200) {
					const p = what === "GET product" ? a.body : a.body.rows.find((r: any) => r.id === product.id);
					// The catalog's own copy, or "unknown" — never a made-up 0.
					if (p) expect(p.available, `${phase}: ${what}`).to.not.equal(0);
				} else expect(a.status, `${phase}: ${what} ${JSON.stringify(a.body)}`).to.equal(503);
			}
			for (const [what, a] of [["add to cart", add], ["change quantity", change]] as const) {
				expect(a.status, `${phase}: ${what} ${JSON.stringify(a.body)}`).to.equal(503);
				expect(a.body.retryable ?? true).to.equal(true);
			}
			seen.push(`${phase}: product ${one.status}, list ${list.status}, add ${add.status} ${add.body?.type}, change ${change.status} ${change.body?.type}`);
		};
		// At once: the node is still in the registry; the calls queue for a consumer that is gone and time out.
		await check("just after the kill");
		// Until every registry has dropped the node.
		await eventually(() => !client.registry.nodes.get(nodeID)?.available, 30_000, "the dead node to leave the registry");
		const goneAfter = Date.now() - killedAt;
		await check("after the node left the registry");

		await startInventory();
		const back = await eventually(async () => {
			const a = await http.get(`/api/products/${product.id}`);
			return a.status === 200 && typeof a.body.available === "number" ? a.body : null;
		}, 30_000, "the stock to be known again");
		expect(back.available).to.be.a("number").and.at.least(10_000_000 - 10);
		expectStatus(await http.post("/api/cart/items", { productId: product.id, quantity: 1 }, customer.token), 200);
		figures.push(`SIGKILLed inventory left the client's registry ${goneAfter} ms after the kill (heartbeatInterval 1 s, heartbeatTimeout 3 s)`, ...seen);
	});
});
