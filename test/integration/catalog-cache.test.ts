/**
 * The catalog's read cache (mixins/catalog-cache.ts) on the real system: a warm product list
 * runs no query, a catalog change (a new price, a product taken off sale) is seen by the very
 * next read, a stock change reaches the lists through `inventory.updated` long before the
 * cache's own expiry, and the gateway answers a revalidation with 304. The gateway's own copy
 * (services/api/read-cache.ts): a warm read never reaches the catalog, a change made through
 * another node reaches it by the catalog's broadcast, a change made through it is read at once.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import Redis from "ioredis";
import { Cluster, eventually, startCluster } from "../support/cluster";
import { Http } from "../support/http";
import { gatewayOf, tokenFor } from "../support/payments";
import { ReadCache } from "../../services/api/read-cache";
import { settings } from "../../infra/settings";

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

	it("a burst of stock changes drops the cache once at its start and once at its end, not once per change, and the list ends with the last level", async () => {
		const p = await activeProduct(5);
		const catalog = cluster.brokers[1]!.getLocalService("catalog") as any;
		const spellMs = settings.catalogStockCleanMs;
		await new Promise(r => setTimeout(r, spellMs + 300)); // the product's own stock events are in, their spell is over
		let cleans = 0;
		const clean = catalog.cleanCatalogCache;
		catalog.cleanCatalogCache = function (this: unknown) {
			cleans++;
			return clean.call(this);
		};
		try {
			// Twenty changes at once, as checkouts under load make them.
			const t0 = performance.now();
			await Promise.all(Array.from({ length: 20 }, () => cluster.call("inventory.adjust", { sku: p.sku, adjustment: 1, reason: "delivery", idempotencyKey: randomUUID() }, admin)));
			const row = await eventually(async () => {
				const r = (await listed(p.categoryId))[0];
				return r?.available === 25 ? r : null;
			}, 5_000, "the last stock level in the list");
			const burstMs = performance.now() - t0;
			expect(row.id).to.equal(p.id);
			await new Promise(r => setTimeout(r, spellMs + 300)); // every spell is over
			// One clean when the burst begins, then at most one at the end of each spell it lasted.
			expect(cleans).to.be.at.least(1);
			expect(cleans).to.be.at.most(2 + Math.ceil(burstMs / spellMs));
			expect(cleans, "not one per change").to.be.below(20);
		} finally {
			catalog.cleanCatalogCache = clean;
		}
	});

	it("dropping the cache walks the cache's own keys, not the sagas': with 5,000 saga keys in Redis a change costs a few SCAN calls", async () => {
		const p = await activeProduct(3);
		const redis = new Redis(process.env.REDIS_URL!);
		try {
			// Saga records are kept in Redis (REDIS_URL): a shop that ran for a while holds many.
			const filler = redis.pipeline();
			for (let i = 0; i < 5000; i++) filler.set(`${process.env.REDIS_PREFIX}saga:{s1}:filler-${i}`, "{}");
			await filler.exec();
			await listed(p.categoryId); // something cached
			await new Promise(r => setTimeout(r, 500)); // the product's own stock events have been taken in
			const scans = async () => Number(/cmdstat_scan:calls=(\d+)/.exec(await redis.info("commandstats"))?.[1] ?? 0);
			const before = await scans();
			await cluster.call("catalog.updateProduct", { id: p.id, description: "Dropped the cache" }, admin);
			// Moleculer's cacher scans 100 keys a call: the saga keys alone would be 50 calls.
			expect((await scans()) - before).to.be.below(10);
			expect((await listed(p.categoryId))[0].description).to.equal("Dropped the cache");
		} finally {
			redis.disconnect();
		}
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
		// Changed through another node: the gateway hears of it by the catalog's broadcast (milliseconds).
		const changed = await eventually(async () => {
			const r = await http.get(url, undefined, revalidate(etag));
			return r.status === 200 ? r : null;
		}, 3000, "the change to reach the gateway");
		expect(changed.body.rows).to.deep.equal([]);
		expect(changed.headers.get("etag")).to.not.equal(etag);
	});

	describe("the gateway's own copy of the reads", () => {
		let api: any;
		before(() => {
			api = cluster.brokers[0]!.getLocalService("api");
			// A minute: whatever is seen sooner below was cleared by a broadcast or a write, not by expiry.
			api.readCache = new ReadCache(60_000);
		});

		it("answers a warm read without calling the catalog; a change through another node arrives by broadcast, one through it at once", async () => {
			const p = await activeProduct(4);
			const url = `/api/products?categoryId=${p.categoryId}&page=1&pageSize=20`;
			const adminToken = tokenFor({ id: randomUUID(), role: "admin" });
			// Each call the catalog takes, counted by a listener on its node's transit.
			const catalogNode: any = cluster.brokers[1]!;
			let taken = 0;
			const count = (packet: any) => void (packet?.payload?.action?.startsWith("catalog.") && taken++);
			const original = catalogNode.transit.requestHandler.bind(catalogNode.transit);
			catalogNode.transit.requestHandler = (payload: any) => {
				count({ payload });
				return original(payload);
			};
			try {
				const cold = await http.get(url);
				expect(cold.status).to.equal(200);
				expect(cold.body.rows.map((r: any) => r.id)).to.deep.equal([p.id]);
				await eventually(async () => {
					taken = 0;
					const warm = await Promise.all([http.get(url), http.get(url), http.get(`/api/products/${p.id}`), http.get(`/api/products/${p.id}`)]);
					expect(warm.map(w => w.status)).to.deep.equal([200, 200, 200, 200]);
					expect(warm[0]!.body).to.deep.equal(cold.body);
					return taken === 0;
				}, 10_000, "warm reads answered by the gateway alone");
				// An admin's read is kept apart: a draft is in it, not in the shopper's.
				const draft = await cluster.call("catalog.createProduct", { name: name("Draft"), price: { amount: 100, currency: "PLN" }, categoryId: p.categoryId }, admin);
				const asAdmin = await eventually(async () => {
					const r = await http.get(url, adminToken);
					return r.body.rows?.length === 2 ? r : null;
				}, 3000, "the admin's list with the draft");
				expect(asAdmin.body.rows.map((r: any) => r.id)).to.include(draft.id);
				expect((await http.get(url)).body.rows.map((r: any) => r.id)).to.deep.equal([p.id]);

				// Through another node: the broadcast clears the gateway's copy long before its minute is up.
				await cluster.call("catalog.updateProduct", { id: p.id, price: { amount: 1234, currency: "PLN" } }, admin);
				const seen = await eventually(async () => {
					const r = await http.get(url);
					return r.body.rows?.[0]?.price?.amount === 1234 ? r : null;
				}, 3000, "the new price through the broadcast");
				expect(seen.status).to.equal(200);

				// Through this gateway: the very next read has it.
				const patched = await http.patch(`/api/products/${p.id}`, { price: { amount: 2345, currency: "PLN" } }, adminToken);
				expect(patched.status, JSON.stringify(patched.body)).to.equal(200);
				expect((await http.get(url)).body.rows[0].price.amount).to.equal(2345);
				expect((await http.get(`/api/products/${p.id}`)).body.price.amount).to.equal(2345);
			} finally {
				catalogNode.transit.requestHandler = original;
			}
		});
	});
});
