/**
 * The gateway against any client, honest or not: OpenAPI generated from the code, HTTP hygiene,
 * correlation ids, readiness, rate limits shared through Redis, who may call what, and bad input
 * that is refused without changing anything.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import knexFactory, { Knex } from "knex";
import SwaggerParser from "@apidevtools/swagger-parser";
import type { ServiceBroker } from "moleculer";
import apiSchema from "../../services/api.service";
import { ROUTES } from "../../services/api/routes";
import { clientAddress, parseTrustedProxies } from "../../services/api/client-address";
import { createBroker } from "../../bin/broker";
import { SERVICE_NAMES } from "../../services";
import { Cluster, eventually, startCluster } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { adminLogin, CARDS, finishedSaga, productInStock, readyCheckout, verifiedCustomer } from "../support/shop";

const ALL_BUT_API = SERVICE_NAMES.filter(name => name !== "api");

function portOf(broker: ServiceBroker, name = "api"): number {
	const svc: any = broker.getLocalService(name);
	return (svc.server.address() as AddressInfo).port;
}

describe("the gateway", function () {
	this.timeout(120_000);
	let cluster: Cluster;
	let http: Http;
	let admin: string;
	let db: Knex;

	before(async () => {
		cluster = await startCluster([["api"], ALL_BUT_API]);
		http = new Http(`http://127.0.0.1:${portOf(cluster.brokers[0]!)}`);
		admin = await adminLogin(http);
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
	});
	after(async () => {
		await cluster?.stop();
		await db?.destroy();
	});

	describe("OpenAPI", () => {
		it("GET /api/openapi.json is a valid OpenAPI 3 document of every route, with the joi schemas", async () => {
			const doc = expectStatus(await http.get("/api/openapi.json"), 200);
			await SwaggerParser.validate(structuredClone(doc));
			for (const r of ROUTES) {
				const path = `/api${r.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`;
				expect(doc.paths[path]?.[r.method.toLowerCase()], `${r.method} ${path}`).to.be.an("object");
			}
			const register = doc.paths["/api/auth/register"].post.requestBody.content["application/json"].schema;
			expect(register.required).to.include.members(["email", "password", "firstName", "lastName"]);
			const add = doc.paths["/api/cart/items"].post.requestBody.content["application/json"].schema;
			expect(add.properties.quantity.type).to.equal("integer");
			expect(doc.paths["/api/orders/{id}"].get.security).to.deep.equal([{ bearer: [] }]);
		});
	});

	describe("HTTP hygiene", () => {
		it("an unknown route is 404, a wrong method is 404 or 405, never 500", async () => {
			expect((await http.get("/api/nothing-here")).status).to.equal(404);
			expect((await http.get("/elsewhere")).status).to.equal(404);
			expect([404, 405]).to.include((await http.request("PUT", "/api/auth/login", { body: {} })).status);
			expect([404, 405]).to.include((await http.delete("/api/products")).status);
		});

		it("malformed JSON is 400 and a body over the limit is 413", async () => {
			const bad = await http.request("POST", "/api/auth/login", { raw: '{"email": "a@b.c", ' });
			expect(bad.status).to.equal(400);
			expect(bad.body.type).to.equal("MALFORMED_JSON");
			const huge = await http.request("POST", "/api/auth/register", { raw: JSON.stringify({ email: "a@b.c", password: "x".repeat(200_000), firstName: "A", lastName: "B" }) });
			expect(huge.status).to.equal(413);
		});

		it("a 201 says where the new resource lives", async () => {
			const created = await http.post("/api/categories", { name: `Located ${randomUUID().slice(0, 8)}` }, admin);
			expect(created.status).to.equal(201);
			expect(created.headers.get("location")).to.equal(`/api/categories/${created.body.id}`);
		});

		it("X-Correlation-Id is echoed, or made when absent, and carried into the saga", async () => {
			const sent = `corr-${randomUUID()}`;
			const r = await http.get("/api/health/live", undefined, { "x-correlation-id": sent });
			expect((await http.get("/api/products", undefined, { "x-correlation-id": sent })).headers.get("x-correlation-id")).to.equal(sent);
			expect(r.status).to.equal(200);
			const made = (await http.get("/api/products")).headers.get("x-correlation-id");
			expect(made).to.match(/^[0-9a-f-]{36}$/);
			const unsafe = (await http.get("/api/products", undefined, { "x-correlation-id": "<script>" })).headers.get("x-correlation-id");
			expect(unsafe).to.not.equal("<script>");

			const p = await productInStock(http, admin, { stock: 2 });
			const c = await verifiedCustomer(http, admin);
			expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, c.token), 200);
			await readyCheckout(http, c.token);
			const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token, { "x-correlation-id": sent }), 202);
			const saga = await finishedSaga(http, admin, placed.checkout.sagaId);
			expect(saga.correlationId).to.equal(sent);
		});

		it("liveness answers, and readiness names each server", async () => {
			expect(expectStatus(await http.get("/api/health/live"), 200).status).to.equal("ok");
			const ready = expectStatus(await http.get("/api/health/ready"), 200);
			expect(ready.checks).to.deep.equal({ rabbitmq: "up", postgres: "up", redis: "up" });
		});
	});

	describe("rate limits (a second gateway replica with low limits, sharing Redis)", () => {
		let node: ServiceBroker;
		let limited: Http;
		before(async () => {
			node = createBroker({ services: [], nodeID: `${process.env.TEST_RUN_ID}-rl` });
			node.createService({
				mixins: [apiSchema],
				name: "api",
				settings: { port: 0, rateLimitPrefix: "rl-test:", rateLimits: { windowMs: 60_000, max: 1000, authMax: 20, trustedProxies: "127.0.0.1" } }
			} as any);
			await node.start();
			await node.waitForServices(ALL_BUT_API);
			limited = new Http(`http://127.0.0.1:${portOf(node)}`);
		});
		after(async () => node?.stop());

		it("the 21st login attempt of one client within the window is 429 with Retry-After; other clients are unaffected", async () => {
			const client = { "x-forwarded-for": "203.0.113.7" };
			for (let i = 1; i <= 20; i++) {
				const r = await limited.post("/api/auth/login", { email: "nobody@example.com", password: "Wrong-pass-1" }, undefined, client);
				expect(r.status, `attempt ${i}`).to.equal(401);
			}
			const blocked = await limited.post("/api/auth/login", { email: "nobody@example.com", password: "Wrong-pass-1" }, undefined, client);
			expect(blocked.status).to.equal(429);
			expect(blocked.body.type).to.equal("RATE_LIMITED");
			expect(Number(blocked.headers.get("retry-after"))).to.be.within(1, 60);
			const other = await limited.post("/api/auth/login", { email: "nobody@example.com", password: "Wrong-pass-1" }, undefined, { "x-forwarded-for": "198.51.100.9" });
			expect(other.status).to.equal(401);
			// The limit is for authentication: the same client may still read the catalog.
			expect((await limited.get("/api/products", undefined, client)).status).to.equal(200);
		});

		it("X-Forwarded-For is believed only from a trusted proxy", async () => {
			// The main gateway trusts no proxy: a client cannot dodge its limit by inventing addresses.
			const r = await http.get("/api/products", undefined, { "x-forwarded-for": "203.0.113.7" });
			expect(r.status).to.equal(200);
			expect(clientAddress("10.0.0.5", "203.0.113.7", parseTrustedProxies(""))).to.equal("10.0.0.5");
			expect(clientAddress("::ffff:127.0.0.1", "198.51.100.1, 203.0.113.7", parseTrustedProxies("127.0.0.1"))).to.equal("203.0.113.7");
			expect(clientAddress("127.0.0.1", "198.51.100.1, 127.0.0.1", parseTrustedProxies("127.0.0.1"))).to.equal("198.51.100.1");
		});
	});

	describe("who may call what", () => {
		let A: Awaited<ReturnType<typeof verifiedCustomer>>;
		let B: Awaited<ReturnType<typeof verifiedCustomer>>;
		let orderOfA: string;
		let sagaOfA: string;
		let productId: string;

		before(async () => {
			A = await verifiedCustomer(http, admin);
			B = await verifiedCustomer(http, admin);
			const p = await productInStock(http, admin, { stock: 5 });
			productId = p.id;
			expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, A.token), 200);
			await readyCheckout(http, A.token);
			const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, A.token), 202);
			orderOfA = placed.orderId;
			sagaOfA = placed.checkout.sagaId;
			await finishedSaga(http, admin, sagaOfA);
		});

		function concrete(path: string) {
			return path.replace(":sagaId", sagaOfA).replace(":id", path.startsWith("/orders") ? orderOfA : path.startsWith("/products") ? productId : randomUUID()).replace(":sku", productId).replace(":itemId", randomUUID());
		}

		it("every route: anonymous callers get 401 unless public, customers get 403 on admin routes, admins pass", async () => {
			const rows: string[] = [];
			for (const r of ROUTES) {
				if (r.path === "/auth/login" || r.path === "/auth/register") continue; // counted against the auth limit; covered above
				const path = `/api${concrete(r.path)}`;
				const anonymous = await http.request(r.method, path, { body: r.method === "GET" || r.method === "DELETE" ? undefined : {} });
				const customer = await http.request(r.method, path, { token: B.token, body: r.method === "GET" || r.method === "DELETE" ? undefined : {} });
				const asAdmin = await http.request(r.method, path, { token: admin, body: r.method === "GET" || r.method === "DELETE" ? undefined : {} });
				rows.push(`${r.method} ${r.path}: ${anonymous.status}/${customer.status}/${asAdmin.status}`);
				for (const res of [anonymous, customer, asAdmin]) expect(res.status, `${r.method} ${r.path} ${JSON.stringify(res.body)}`).to.be.below(500);
				// A provider's webhook needs no login but its signature: unsigned, it is 401.
				if (r.signed) expect(anonymous.status, `${r.method} ${r.path} unsigned`).to.equal(401);
				else if (r.access === "public") expect(anonymous.status, `${r.method} ${r.path}`).to.not.equal(401);
				else expect(anonymous.status, `${r.method} ${r.path} anonymous`).to.equal(401);
				if (r.access === "admin") {
					expect(customer.status, `${r.method} ${r.path} customer`).to.equal(403);
					expect([401, 403], `${r.method} ${r.path} admin`).to.not.include(asAdmin.status);
				}
			}
			expect(rows.length).to.equal(ROUTES.length - 2);
		});

		it("a customer reaches only their own orders and checkouts: another's answer 404, not the data", async () => {
			expect((await http.get(`/api/orders/${orderOfA}`, A.token)).status).to.equal(200);
			const other = await http.get(`/api/orders/${orderOfA}`, B.token);
			expect(other.status).to.equal(404);
			expect(JSON.stringify(other.body)).to.not.include(A.email);
			expect((await http.get(`/api/checkout/status/${sagaOfA}`, B.token)).status).to.equal(404);
			const listB = expectStatus(await http.get("/api/orders", B.token), 200);
			expect(listB.rows.map((o: any) => o.id)).to.not.include(orderOfA);
			expect((await http.get("/api/admin/sagas", A.token)).status).to.equal(403);
			expect((await http.get(`/api/admin/notifications?to=${encodeURIComponent(A.email)}`, B.token)).status).to.equal(403);
		});

		it("operators get 404 for an unknown saga and 409 INVALID_TRANSITION for a finished one", async () => {
			for (const command of ["retry", "compensate"]) {
				const unknown = await http.post(`/api/admin/sagas/${randomUUID()}/${command}`, {}, admin);
				expect(unknown.status, command).to.equal(404);
				expect(unknown.body.type).to.equal("NOT_FOUND");
				const finished = await http.post(`/api/admin/sagas/${sagaOfA}/${command}`, {}, admin);
				expect(finished.status, command).to.equal(409);
				expect(finished.body.type).to.equal("INVALID_TRANSITION");
			}
		});

		it("an expired, tampered or foreign-signed token is refused with 401", async () => {
			const jwt = await import("jsonwebtoken");
			const expired = jwt.default.sign({ sub: A.id, role: "customer", email: A.email }, process.env.JWT_SECRET!, { expiresIn: -10 });
			const foreign = jwt.default.sign({ sub: A.id, role: "admin", email: A.email }, "another-key");
			const [h, p, s] = A.token.split(".");
			const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
			const tampered = [h, Buffer.from(JSON.stringify({ ...claims, role: "admin" })).toString("base64url"), s].join(".");
			const none = [Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url"), Buffer.from(JSON.stringify({ ...claims, role: "admin" })).toString("base64url"), ""].join(".");
			for (const [what, token] of [["expired", expired], ["foreign", foreign], ["tampered", tampered], ["alg none", none], ["garbage", "abc"]]) {
				const r = await http.get("/api/orders", token);
				expect(r.status, what!).to.equal(401);
			}
			expect((await http.get("/api/orders", undefined, { authorization: `Basic ${Buffer.from("a:b").toString("base64")}` })).status).to.equal(401);
		});

		it("no answer and no event ever carries a password", async () => {
			const email = `pw-${randomUUID().slice(0, 8)}@example.com`;
			const password = `Secret-${randomUUID()}`;
			const reg = expectStatus(await http.post("/api/auth/register", { email, password, firstName: "P", lastName: "W" }), 201);
			const login = await http.post("/api/auth/login", { email, password });
			for (const body of [reg, login.body]) expect(JSON.stringify(body)).to.not.include(password);
			const outboxes = await db.raw(`SELECT count(*)::int AS n FROM ${process.env.SCHEMA_PREFIX}customers.outbox WHERE envelope::text LIKE ?`, [`%${password}%`]);
			expect(outboxes.rows[0].n).to.equal(0);
		});
	});

	describe("customer data through the gateway", () => {
		it("addresses are checked per country; erasure waits for open orders, then the login is gone", async () => {
			const c = await verifiedCustomer(http, admin);
			const added = expectStatus(await http.post("/api/me/addresses", { recipientName: "Ada L", street: "Marszałkowska 1", city: "Warszawa", postalCode: "00-001", country: "pl" }, c.token), 201);
			expect(added.country).to.equal("PL");
			const bad = await http.post("/api/me/addresses", { recipientName: "Ada L", street: "x", city: "y", postalCode: "0001", country: "PL" }, c.token);
			expect(bad.status).to.equal(422);
			expect(bad.body.data.map((d: any) => d.field)).to.include("postalCode");
			const unsupported = await http.post("/api/me/addresses", { recipientName: "Ada L", street: "x", city: "y", postalCode: "12345", country: "ZZ" }, c.token);
			expect(unsupported.body.data.map((d: any) => d.field)).to.include("country");
			expect(expectStatus(await http.get("/api/me/addresses", c.token), 200).rows).to.have.length(1);

			const p = await productInStock(http, admin, { stock: 1 });
			expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, c.token), 200);
			await readyCheckout(http, c.token);
			const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
			await finishedSaga(http, admin, placed.checkout.sagaId);
			expect((await http.delete("/api/me", c.token, { confirmation: false })).status).to.equal(422);
			const pending = await http.delete("/api/me", c.token, { confirmation: true });
			expect(pending.status).to.equal(409);
			expect(pending.body.type).to.equal("PENDING_ORDERS");

			expectStatus(await http.post(`/api/orders/${placed.orderId}/ship`, { trackingNumber: "TRK1", carrier: "DHL" }, admin), 200);
			expectStatus(await http.delete("/api/me", c.token, { confirmation: true }), 200);
			expect((await http.post("/api/auth/login", { email: c.email, password: c.password })).status).to.equal(401);
			await eventually(async () => (await http.get(`/api/orders/${placed.orderId}`, admin)).body.customerEmail === null, 10_000, "the order to be anonymized");
			await eventually(async () => (await http.get(`/api/admin/notifications?to=${encodeURIComponent(c.email)}`, admin)).body.total === 0, 10_000, "the delivery log to forget the address");
		});
	});

	describe("bad input", () => {
		/** Row counts of every table of this run's schemas (outbox and inbox included). */
		async function snapshot(): Promise<Record<string, number>> {
			const tables = await db.raw(`SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema LIKE ? AND table_name NOT LIKE 'knex_%'`, [`${process.env.SCHEMA_PREFIX}%`]);
			const out: Record<string, number> = {};
			for (const t of tables.rows) {
				const r = await db.raw(`SELECT count(*)::int AS n FROM ??.??`, [t.table_schema, t.table_name]);
				out[`${t.table_schema}.${t.table_name}`] = r.rows[0].n;
			}
			return out;
		}

		const INJECTIONS = ["'; DROP TABLE orders; --", "\" OR 1=1 --", "<script>alert(1)</script>", "${7*7}", "../../etc/passwd", "\u0000"];

		/** For each field of a route's params: values of the wrong type, out of range, huge, hostile. */
		function badValues(description: any, inQuery = false): Array<[string, unknown]> {
			const out: Array<[string, unknown]> = [];
			for (const [field, d] of Object.entries<any>(description?.keys ?? {})) {
				if (field === "idempotencyKey") continue;
				if (d.type === "number") out.push([field, "seven"], [field, -1], [field, 1.5], [field, 1e12], [field, INJECTIONS[0]]);
				else if (d.type === "string") {
					const isId = (d.rules ?? []).some((r: any) => r.name === "guid" || r.name === "email" || r.name === "pattern");
					// In a query string every value is text: only a text that breaks the field's rules is bad there.
					if (!inQuery) out.push([field, 12345], [field, { $gt: "" }]);
					out.push([field, "x".repeat(inQuery ? 5_000 : 20_000)]);
					if (isId) for (const inj of INJECTIONS) out.push([field, inj]);
				} else if (d.type === "object") out.push([field, "not an object"], [field, [1, 2]]);
				else if (d.type === "array") out.push([field, "not an array"], [field, Array.from({ length: 1000 }, () => ({}))]);
				else if (d.type === "boolean") out.push([field, "maybe"]);
			}
			return out;
		}

		it("every route that takes a body or params answers 4xx to bad input, and the database is unchanged", async () => {
			const doc = expectStatus(await http.get("/api/openapi.json"), 200);
			expect(doc).to.be.an("object");
			const services = [...new Set(ROUTES.map(r => r.action.split(".")[0]!))];
			const descriptions: Record<string, any> = Object.assign({}, ...(await Promise.all(services.map(s => cluster.call(`${s}.describeParams`)))));
			const customer = await verifiedCustomer(http, admin);
			await eventually(async () => (await http.get("/api/cart", customer.token)).status === 200, 5000, "cart");
			await new Promise(r => setTimeout(r, 1000)); // let the outbox relays settle
			const before = await snapshot();
			let requests = 0;
			for (const r of ROUTES) {
				const description = descriptions[r.action];
				const token = r.access === "admin" ? admin : customer.token;
				const base = `/api${r.path.replace(/:([A-Za-z0-9_]+)/g, () => randomUUID())}`;
				const withBody = r.method !== "GET" && r.method !== "DELETE";
				const cases: Array<{ path: string; body?: unknown }> = [];
				if (withBody) {
					cases.push({ path: base, body: { unknownField: "x" } }, { path: base, body: [] }, { path: base, body: "a string" });
					for (const [field, value] of badValues(description)) cases.push({ path: base, body: { [field]: value } });
				} else {
					cases.push({ path: `${base}${base.includes("?") ? "&" : "?"}unknownField=1` });
					for (const [field, value] of badValues(description, true)) if (typeof value === "string" || typeof value === "number") cases.push({ path: `${base}?${field}=${encodeURIComponent(String(value))}` });
				}
				if (r.path.includes(":")) for (const inj of INJECTIONS.slice(0, 4)) cases.push({ path: `/api${r.path.replace(/:([A-Za-z0-9_]+)/g, encodeURIComponent(inj))}`, body: withBody ? {} : undefined });
				for (const c of cases) {
					const res = await http.request(r.method, c.path, { token, body: c.body });
					requests++;
					const what = `${r.method} ${c.path.slice(0, 80)} ${JSON.stringify(c.body)?.slice(0, 80)} → ${res.status} ${JSON.stringify(res.body)?.slice(0, 200)}`;
					expect(res.status, what).to.be.within(400, 499);
					expect(res.body, what).to.be.an("object").that.includes.keys("name", "message", "code", "type");
				}
			}
			expect(requests).to.be.greaterThan(200);
			await new Promise(r => setTimeout(r, 500));
			const after = await snapshot();
			// Only the admin's and the test customer's own reads may leave traces (none expected).
			expect(after).to.deep.equal(before);
		});

		it("a validation error names each bad field", async () => {
			const r = await http.post("/api/auth/register", { email: "not-an-email", password: 5, firstName: "", extra: true });
			expect(r.status).to.equal(422);
			expect(r.body.type).to.equal("VALIDATION_ERROR");
			const fields = r.body.data.map((d: any) => d.field);
			expect(fields).to.include.members(["email", "password", "firstName", "lastName", "extra"]);
		});
	});
});
