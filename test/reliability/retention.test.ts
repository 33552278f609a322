/**
 * Inbox, idempotency keys and sent outbox rows are pruned after their retention by one replica
 * at a time, and inside the window deduplication still holds: a redelivered recent event is
 * recognised and handled once.
 */
import { expect } from "chai";
import { randomUUID } from "node:crypto";
import { envelope } from "../../contracts/events";
import { pruneLockName } from "../../mixins/db.mixin";
import { eventually, useShop } from "../support/cluster";

describe("retention of messaging rows", function () {
	this.timeout(60_000);
	const shop = useShop([["notifications"]], []);
	const schema = `${process.env.SCHEMA_PREFIX}notifications`;
	const service = () => shop.cluster.broker.getLocalService("notifications") as any;
	const publish = (name: string, event: unknown) => (shop.cluster.broker as any).sendToChannel(name, event) as Promise<void>;
	const deliveriesTo = async (email: string) => Number((await shop.db.withSchema(schema).table("notifications").where({ to: email }).count({ n: "*" }))[0]!.n);

	/** Rows of every messaging table, some past the default 7 days and some within them. */
	async function seed(tag: string) {
		const old = shop.db.raw("now() - interval '8 days'");
		const recent = shop.db.raw("now() - interval '6 days'");
		const ids = { oldEvent: randomUUID(), recentEvent: randomUUID(), oldKey: `old-${tag}`, recentKey: `recent-${tag}`, oldSent: randomUUID(), oldUnsent: randomUUID(), recentSent: randomUUID() };
		await shop.db.withSchema(schema).table("inbox").insert([
			{ handler: "test.handler", event_id: ids.oldEvent, event_name: "test.event", handled_at: old },
			{ handler: "test.handler", event_id: ids.recentEvent, event_name: "test.event", handled_at: recent }
		]);
		await shop.db.withSchema(schema).table("idempotency_keys").insert([
			{ key: ids.oldKey, action: "test.action", result: "{}", created_at: old },
			{ key: ids.recentKey, action: "test.action", result: "{}", created_at: recent }
		]);
		// Claimed far ahead, so the relay leaves these made-up rows alone.
		const claimed_until = shop.db.raw("now() + interval '1 day'");
		const row = (event_id: string, sent_at: unknown, created_at: unknown) => ({ event_id, event_name: "test.event", aggregate_id: "x", envelope: "{}", sent_at, created_at, claimed_until });
		await shop.db.withSchema(schema).table("outbox").insert([row(ids.oldSent, old, old), row(ids.oldUnsent, null, old), row(ids.recentSent, recent, recent)]);
		return ids;
	}

	async function present(ids: Awaited<ReturnType<typeof seed>>) {
		const t = (name: string) => shop.db.withSchema(schema).table(name);
		return {
			oldEvent: !!(await t("inbox").where({ event_id: ids.oldEvent }).first()),
			recentEvent: !!(await t("inbox").where({ event_id: ids.recentEvent }).first()),
			oldKey: !!(await t("idempotency_keys").where({ key: ids.oldKey }).first()),
			recentKey: !!(await t("idempotency_keys").where({ key: ids.recentKey }).first()),
			oldSent: !!(await t("outbox").where({ event_id: ids.oldSent }).first()),
			oldUnsent: !!(await t("outbox").where({ event_id: ids.oldUnsent }).first()),
			recentSent: !!(await t("outbox").where({ event_id: ids.recentSent }).first())
		};
	}

	it("rows past the retention are deleted, rows within it and unsent events are kept", async () => {
		await eventually(() => service().schemaReady.then(() => true), 10_000, "schema");
		const ids = await seed("a");
		const result = await service().pruneMessaging();
		expect(result.inbox).to.be.at.least(1);
		expect(result.idempotencyKeys).to.be.at.least(1);
		expect(result.outbox).to.be.at.least(1);
		expect(await present(ids)).to.deep.equal({ oldEvent: false, recentEvent: true, oldKey: false, recentKey: true, oldSent: false, oldUnsent: true, recentSent: true });
	});

	it("only one replica prunes at a time: while another holds the schema's lock, the job steps aside", async () => {
		const ids = await seed("b");
		const conn = await shop.db.client.acquireConnection();
		try {
			await conn.query("SELECT pg_advisory_lock(hashtext($1))", [pruneLockName(schema)]);
			expect(await service().pruneMessaging()).to.equal(null);
			expect((await present(ids)).oldEvent, "nothing pruned while the other replica holds the lock").to.equal(true);
			await conn.query("SELECT pg_advisory_unlock(hashtext($1))", [pruneLockName(schema)]);
		} finally {
			await shop.db.client.releaseConnection(conn);
		}
		expect((await service().pruneMessaging()).inbox).to.be.at.least(1);
		expect((await present(ids)).oldEvent).to.equal(false);
	});

	it("after pruning, a redelivered recent event is still handled once", async () => {
		const email = `ret-${randomUUID().slice(0, 8)}@example.com`;
		const event = envelope("customer.verification_requested", randomUUID(), { customerId: randomUUID(), email, firstName: "R", token: randomUUID(), expiresAt: null });
		await publish("customer.verification_requested", event);
		await eventually(async () => (await deliveriesTo(email)) === 1, 15_000, "the first delivery");
		await service().pruneMessaging();

		// The same event again (a redelivery), then a different one behind it.
		await publish("customer.verification_requested", event);
		const other = `ret-${randomUUID().slice(0, 8)}@example.com`;
		await publish("customer.verification_requested", envelope("customer.verification_requested", randomUUID(), { customerId: randomUUID(), email: other, firstName: "S", token: randomUUID(), expiresAt: null }));
		await eventually(async () => (await deliveriesTo(other)) === 1, 15_000, "the later event");
		await new Promise(r => setTimeout(r, 500));
		expect(await deliveriesTo(email)).to.equal(1);
	});
});
