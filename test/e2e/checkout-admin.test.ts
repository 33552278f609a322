/**
 * The admin endpoints for shipping methods, promotions and add-ons through HTTP, as a shop owner
 * and a storefront use them: who may call what, 201 with a Location, 422 naming the field,
 * and refusals changing nothing.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import knexFactory, { Knex } from "knex";
import { Cluster, startCluster } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { adminLogin, verifiedCustomer } from "../support/shop";

const PLN = (amount: number) => ({ amount, currency: "PLN" });

describe("admin endpoints for shipping methods, promotions and add-ons (HTTP)", function () {
	this.timeout(90_000);
	let cluster: Cluster;
	let http: Http;
	let admin: string;
	let customer: string;
	let db: Knex;
	const prefix = process.env.SCHEMA_PREFIX;

	before(async () => {
		cluster = await startCluster([["api", "customers"], ["shipping", "promotions", "addons"]]);
		const svc: any = cluster.brokers[0]!.getLocalService("api");
		http = new Http(`http://127.0.0.1:${(svc.server.address() as AddressInfo).port}`);
		admin = await adminLogin(http);
		customer = (await verifiedCustomer(http, admin, { verify: false })).token;
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
	});
	after(async () => {
		await cluster?.stop();
		await db?.destroy();
	});

	const resources = [
		{
			path: "/api/admin/shipping-methods", table: `${prefix}shipping.methods`,
			valid: () => ({ name: `Pallet ${randomUUID().slice(0, 6)}`, carrier: "Raben", price: PLN(9900), countries: ["PL"], deliveryDays: { min: 3, max: 7 } }),
			invalid: { name: "Pallet", carrier: "Raben", price: PLN(9900), countries: ["PL"], deliveryDays: { min: 7, max: 3 } }, field: "deliveryDays.max",
			change: { price: PLN(8900) }
		},
		{
			path: "/api/admin/promotions", table: `${prefix}promotions.promotions`,
			valid: () => ({ name: "Black week", code: `BW${randomUUID().slice(0, 6)}`, kind: "percentage", value: 25, usageLimit: 100 }),
			invalid: { name: "Black week", kind: "percentage", value: 250 }, field: "value",
			change: { value: 30 }
		},
		{
			path: "/api/admin/addons", table: `${prefix}addons.addons`,
			valid: () => ({ name: `Engraving ${randomUUID().slice(0, 6)}`, description: "Your words in steel", price: PLN(2500), categoryIds: [randomUUID()] }),
			invalid: { name: "Engraving", price: { amount: 25.5, currency: "PLN" } }, field: "price.amount",
			change: { price: PLN(2900) }
		}
	];

	for (const r of resources) {
		it(`${r.path}: admins create (201, Location), list and change; anyone else is refused and nothing changes`, async () => {
			const [schema, table] = r.table.split(".") as [string, string];
			const rows = () => db.withSchema(schema).table(table).orderBy("id");
			const before = await rows();
			for (const [token, status] of [[undefined, 401], [customer, 403], ["not-a-token", 401]] as const) {
				expect((await http.post(r.path, r.valid(), token)).status, `create as ${token ?? "anonymous"}`).to.equal(status);
				expect((await http.patch(`${r.path}/${randomUUID()}`, r.change, token)).status).to.equal(status);
			}
			const invalid = await http.post(r.path, r.invalid, admin);
			expect(invalid.status).to.equal(422);
			expect(invalid.body.type).to.equal("VALIDATION_ERROR");
			expect(invalid.body.data.map((d: any) => d.field)).to.include(r.field);
			expect((await http.patch(`${r.path}/${randomUUID()}`, r.change, admin)).status).to.equal(404);
			expect((await http.patch(`${r.path}/not-an-id`, r.change, admin)).status).to.equal(422);
			expect(await rows()).to.deep.equal(before);

			const created = await http.post(r.path, r.valid(), admin);
			expect(created.status).to.equal(201);
			expect(created.headers.get("location")).to.equal(`${r.path}/${created.body.id}`);
			const changed = expectStatus(await http.patch(`${r.path}/${created.body.id}`, r.change, admin), 200);
			expect(changed).to.deep.include(r.change);
			if (r.path !== "/api/admin/shipping-methods") {
				const list = expectStatus(await http.get(`${r.path}?pageSize=100`, admin), 200);
				expect(list.rows.map((x: any) => x.id)).to.include(created.body.id);
				expect((await http.get(r.path, customer)).status).to.equal(403);
			}
		});
	}

	it("GET /api/shipping-methods is public: the courier and the parcel locker, filtered by country", async () => {
		const all = expectStatus(await http.get("/api/shipping-methods"), 200);
		expect(all.map((m: any) => m.name)).to.include.members(["Courier", "Parcel locker"]);
		const de = expectStatus(await http.get("/api/shipping-methods?country=DE"), 200);
		expect(de.map((m: any) => m.name)).to.include("Courier").and.not.include("Parcel locker");
		const bad = await http.get("/api/shipping-methods?country=Germany");
		expect(bad.status).to.equal(422);
		expect(bad.body.data.map((d: any) => d.field)).to.deep.equal(["country"]);
	});
});
