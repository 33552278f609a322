/**
 * The catalog's read cache (mixins/catalog-cache.ts) on the real system: a warm product list
 * runs no query, a catalog change (a new price, a product taken off sale) is seen by the very
 * next read, a stock change reaches the lists through `inventory.updated` long before the
 * cache's own expiry, and the gateway answers a revalidation with 304.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { Cluster, eventually, startCluster } from "../support/cluster";
import { Http } from "../support/http";
import { gatewayOf } from "../support/payments";

const admin = { user: { id: randomUUID(), role: "admin" } };
const name = (p: string) => `${p} ${randomUUID().slice(0, 8)}`;

describe("catalog read cache (real RabbitMQ, Postgres and Redis)", function () {
	this.timeout(60_000);
	let cluster: Cluster;
	let http: Http;

	before(async () => {
		cluster = await startCluster([["api"], ["catalog"], ["inventory"]]);
		http = gatewayOf(cluster);
	});
	after(async () => cluster?.stop());

	async function activeProduct(stock: number) {
		const categoryId = (await cluster.call("catalog.createCategory", { name: name("Cache") }, admin)).id;
		const p = await cluster.call("catalog.createProduct", { name: name("Cached lamp"), price: { amount: 4999, currency: "PLN" }, categoryId, initialStock: stock }, admin);
		await cluster.call("catalog.activateProduct", { id: p.id }, admin);
		await eventually(async () => (await cluster.call("inventory.get", { sku: p.sku }, admin).catch(() => null))?.available === stock, 15_000, "stock row");
		return { ...p, categoryId } as { id: string; sku: string; categoryId: string };
	}
	const listed = async (categoryId: string) => (await cluster.call("catalog.listProducts", { categoryId, page: 1, pageSize: 20 })).rows as any[];

	it("answers a warm list from the cache, and a price change or a deactivation is in the very next list and product read", async () => {
		const p = await activeProduct(7);
		expect((await listed(p.categoryId)).map(r => r.id)).to.deep.equal([p.id]);
		expect((await cluster.call("catalog.getProduct", { id: p.id })).id).to.equal(p.id);

		// Warm reads run no query at all (the catalog's own Postgres connection stays silent).
		let queries = 0;
		const knex = (cluster.brokers[1]!.getLocalService("catalog") as any).knex;
		const onQuery = () => void queries++;
		knex.on("query", onQuery);
		try {
			// The product's own stock events may still arrive and drop the cache once: then it warms again.
			await eventually(async () => {
				queries = 0;
				for (let i = 0; i < 3; i++) expect((await listed(p.categoryId)).map(r => r.id)).to.deep.equal([p.id]);
				await cluster.call("catalog.getProduct", { id: p.id });
				return queries === 0;
			}, 5_000, "warm reads that run no query");
		} finally {
			knex.off("query", onQuery);
		}

		await cluster.call("catalog.updateProduct", { id: p.id, price: { amount: 3999, currency: "PLN" } }, admin);
		expect((await listed(p.categoryId))[0].price, "the new price is in the very next list").to.deep.equal({ amount: 3999, currency: "PLN" });
		expect((await cluster.call("catalog.getProduct", { id: p.id })).price.amount).to.equal(3999);

		await cluster.call("catalog.deactivateProduct", { id: p.id }, admin);
		expect(await listed(p.categoryId), "the deactivated product left the cached list at once").to.deep.equal([]);
		const gone = await cluster.call("catalog.getProduct", { id: p.id }).catch((err: any) => err);
		expect(gone.code).to.equal(404);
		// An admin's answer (inactive products too) is cached apart from a shopper's.
		expect((await cluster.call("catalog.listProducts", { categoryId: p.categoryId, page: 1, pageSize: 20 }, admin)).rows.map((r: any) => r.id)).to.deep.equal([p.id]);
		expect(await listed(p.categoryId)).to.deep.equal([]);
	});

	it("a stock change reaches the cached list through inventory.updated, well before the cache expires", async () => {
		const p = await activeProduct(5);
		const before = (await listed(p.categoryId))[0];
		await listed(p.categoryId); // warm
		await cluster.call("inventory.adjust", { sku: p.sku, adjustment: 10, reason: "delivery", idempotencyKey: randomUUID() }, admin);
		const after = await eventually(async () => {
			const row = (await listed(p.categoryId))[0];
			return JSON.stringify(row) !== JSON.stringify(before) ? row : null;
		}, 10_000, "the new stock in the list");
		expect(after.id).to.equal(p.id);
		expect(after.available).to.equal(15);
	});

	it("the gateway tags product reads with an ETag: a revalidation answers 304 without a body until the list changes", async () => {
		const p = await activeProduct(3);
		const url = `/api/products?categoryId=${p.categoryId}&page=1&pageSize=20`;
		// fetch adds "Cache-Control: no-cache" to a conditional request, which forbids a 304; a browser revalidates with max-age=0.
		const revalidate = (tag: string) => ({ "if-none-match": tag, "cache-control": "max-age=0" });
		const first = await http.get(url);
		expect(first.status).to.equal(200);
		const etag = first.headers.get("etag")!;
		expect(etag).to.match(/^W\/"[\w-]+"$/);
		expect(first.headers.get("cache-control")).to.equal("public, no-cache");
		const again = await http.get(url, undefined, revalidate(etag));
		expect(again.status).to.equal(304);
		expect(again.body).to.equal(null);
		const detail = await http.get(`/api/products/${p.id}`);
		expect(detail.headers.get("etag")).to.match(/^W\//);
		expect((await http.get(`/api/products/${p.id}`, undefined, revalidate(detail.headers.get("etag")!))).status).to.equal(304);

		await cluster.call("catalog.deactivateProduct", { id: p.id }, admin);
		const changed = await http.get(url, undefined, revalidate(etag));
		expect(changed.status).to.equal(200);
		expect(changed.body.rows).to.deep.equal([]);
		expect(changed.headers.get("etag")).to.not.equal(etag);
	});
});
