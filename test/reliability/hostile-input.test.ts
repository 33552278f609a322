/**
 * Hostile bytes at the gateway: JSON nested thousands deep, NUL characters and text that is not
 * UTF-8 in the body, the query, a path parameter or a header we read — each refused with a clear
 * 4xx before any service runs a query, and nothing in the database changes.
 */
import { expect } from "chai";
import http from "node:http";
import type { AddressInfo } from "node:net";
import knexFactory, { Knex } from "knex";
import { jsonDepth } from "../../services/api/hostile-input";
import { SERVICE_NAMES } from "../../services";
import { Cluster, startCluster } from "../support/cluster";
import { Http } from "../support/http";
import { adminLogin, verifiedCustomer } from "../support/shop";
import { snapshotTables } from "../support/tables";

const ALL_BUT_API = SERVICE_NAMES.filter(name => name !== "api");

/** A request with the exact bytes given (fetch would re-encode a bad path or body). */
function rawRequest(port: number, method: string, path: string, body?: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
	return new Promise((resolve, reject) => {
		const req = http.request({ host: "127.0.0.1", port, method, path, headers: { ...(body ? { "content-type": "application/json", "content-length": String(body.length) } : {}), ...headers } }, res => {
			const chunks: Buffer[] = [];
			res.on("data", c => chunks.push(c));
			res.on("end", () => {
				const text = Buffer.concat(chunks).toString();
				let parsed: any = text;
				try {
					parsed = JSON.parse(text);
				} catch {
					/* keep the text */
				}
				resolve({ status: res.statusCode ?? 0, body: parsed });
			});
		});
		req.on("error", reject);
		if (body) req.write(body);
		req.end();
	});
}

describe("hostile bytes at the gateway", function () {
	this.timeout(120_000);
	let cluster: Cluster;
	let api: Http;
	let port: number;
	let admin: string;
	let customer: { token: string };
	let db: Knex;
	let initial: Record<string, string>;

	before(async () => {
		cluster = await startCluster([["api"], ALL_BUT_API]);
		port = ((cluster.brokers[0]!.getLocalService("api") as any).server.address() as AddressInfo).port;
		api = new Http(`http://127.0.0.1:${port}`);
		admin = await adminLogin(api);
		customer = await verifiedCustomer(api, admin);
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
		await new Promise(r => setTimeout(r, 1000)); // the outbox relays settle
		initial = await snapshotTables(db);
	});
	after(async () => {
		await cluster?.stop();
		await db?.destroy();
	});

	it("the depth scanner counts brackets outside strings only", () => {
		expect(jsonDepth(Buffer.from('{"a":[{"b":"[[[{{{"}]}'))).to.equal(3);
		expect(jsonDepth(Buffer.from('{"a":"\\"[[["}'))).to.equal(1);
		expect(jsonDepth(Buffer.from("[".repeat(5000)), 32)).to.equal(33);
	});

	it("JSON nested 5,000 deep (~45 KB, under the size limit) is refused with 422 on every write route, the gateway stays up", async () => {
		const deep = Buffer.from('{"a":'.repeat(5000) + "1" + "}".repeat(5000));
		expect(deep.length).to.be.within(30_000, 64_000);
		const arrays = Buffer.from(`{"paymentDetails":${"[".repeat(5000)}${"]".repeat(5000)}}`);
		for (const [method, path, token] of [
			["POST", "/api/auth/register", undefined],
			["POST", "/api/auth/login", undefined],
			["PATCH", "/api/me", customer.token],
			["POST", "/api/categories", admin],
			["POST", "/api/products", admin],
			["POST", "/api/cart/items", customer.token],
			["POST", "/api/checkout/place", customer.token]
		] as const) {
			for (const body of [deep, arrays]) {
				const r = await rawRequest(port, method, path, body, token ? { authorization: `Bearer ${token}` } : {});
				expect(r.status, `${method} ${path}`).to.equal(422);
				expect(r.body.type).to.equal("JSON_TOO_DEEP");
			}
		}
		// 32 levels are allowed (and then refused by the validator for what they are).
		const ok = await rawRequest(port, "POST", "/api/auth/login", Buffer.from(`{"email":${"[".repeat(31)}${"]".repeat(31)}}`));
		expect(ok.status).to.equal(422);
		expect(ok.body.type).to.equal("VALIDATION_ERROR");
		expect((await api.get("/api/health/live")).status).to.equal(200);
	});

	it("a NUL character in a body string, a key, the query, a path parameter or the Idempotency-Key is 422 naming the field", async () => {
		const login = await api.post("/api/auth/login", { email: "a\u0000@example.com", password: "x" });
		expect(login.status).to.equal(422);
		expect(login.body.data.map((d: any) => d.field)).to.deep.equal(["email"]);

		const patch = await api.patch("/api/me", { firstName: "Ada\u0000" }, customer.token);
		expect(patch.status).to.equal(422);
		expect(patch.body.data[0].field).to.equal("firstName");

		const nested = await api.post("/api/products", { name: "x", price: { amount: 1, currency: "PL\u0000" } }, admin);
		expect(nested.status).to.equal(422);
		expect(nested.body.data[0].field).to.equal("price.currency");

		const key = await api.post("/api/categories", { ["na\u0000me"]: "x" }, admin);
		expect(key.status).to.equal(422);

		const lone = await rawRequest(port, "POST", "/api/categories", Buffer.from('{"name":"\\ud800"}'), { authorization: `Bearer ${admin}` });
		expect(lone.status, "an unpaired surrogate").to.equal(422);

		for (const path of ["/api/products?q=a%00b", "/api/categories?x=%00", `/api/admin/notifications?to=a%00b`, "/api/products/%00", "/api/inventory/SKU%00X"]) {
			const r = await api.get(path, admin);
			expect(r.status, path).to.equal(422);
			expect(r.body.type, path).to.equal("VALIDATION_ERROR");
		}

		const withKey = await api.request("POST", "/api/checkout/place", { body: {}, token: customer.token, headers: { "idempotency-key": "k\u00e9y" } });
		expect(withKey.status).to.equal(422);
		expect(withKey.body.data[0].field).to.equal("Idempotency-Key");
		const tooLong = await api.request("POST", "/api/checkout/place", { body: {}, token: customer.token, headers: { "idempotency-key": "k".repeat(201) } });
		expect(tooLong.status).to.equal(422);
	});

	it("bytes that are not UTF-8: a raw body is 400, a percent-encoded query or path parameter is 422", async () => {
		const body = Buffer.concat([Buffer.from('{"email":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('@example.com","password":"x"}')]);
		const r = await rawRequest(port, "POST", "/api/auth/login", body);
		expect(r.status).to.equal(400);
		expect(r.body.type).to.equal("INVALID_ENCODING");

		const utf16 = await rawRequest(port, "POST", "/api/auth/login", Buffer.from('{"email":"a"}', "utf16le"), { "content-type": "application/json; charset=utf-16" });
		expect(utf16.status).to.be.within(400, 499);

		for (const path of ["/api/products?q=%FF%FE", "/api/products?%C3%28=1", "/api/products/%FF", "/api/inventory/%E2%82", "/api/orders/%C0%AF"]) {
			const q = await rawRequest(port, "GET", path, undefined, { authorization: `Bearer ${admin}` });
			expect(q.status, path).to.equal(422);
			expect(q.body.type, path).to.equal("VALIDATION_ERROR");
		}
		// A raw byte above 0x7F in the request line itself.
		const rawPath = await rawRequest(port, "GET", "/api/products?q=\u00ff", undefined).catch(() => ({ status: 400, body: null }));
		expect(rawPath.status).to.be.below(500);
	});

	it("none of it changed a row", async () => {
		await new Promise(r => setTimeout(r, 500));
		expect(await snapshotTables(db)).to.deep.equal(initial);
	});
});
