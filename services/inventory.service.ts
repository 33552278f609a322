/**
 * inventory — stock per SKU: on hand, reserved, available. Reservations hold stock for an
 * order (all lines or none); release gives it back; deduct takes it out on shipment. Stock
 * never goes negative (row locks in SKU order, plus a CHECK constraint), and every change
 * leaves an audit row in the same transaction.
 *
 * A cart may hold stock for a while (a soft reservation, `hold`): counted as reserved until the
 * cart changes it, or the hold expires (a job on one replica at a time).
 *
 * A deleted or deactivated product keeps its stock rows and their history, but they take no new
 * reservations. Every change bumps the row's version and publishes inventory.updated with it, so
 * a reader (the catalog's listing) keeps the newest state whatever order events arrive in.
 *
 * Locks: an action on an order first takes that order's transaction-scoped advisory lock
 * (so two replicas never reserve, release or deduct one order at the same time), then the
 * stock rows `FOR UPDATE` in SKU order. Every action takes them in that order: no deadlocks.
 */
import Joi from "joi";
import { conflict, notFound, temporary } from "../contracts/errors";
import { page, pageSize } from "../contracts/paging";
import type { EventEnvelope } from "../contracts/events";
import { DbMixin, writeKey, type Trx } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { Ctx, defineService, ServiceThis } from "../infra/service";
import { readSettings } from "../infra/settings";
import { alertsFor, available, Line, normalizeLines, onHandRefusal, planReservation, StockRow, view } from "./inventory/stock";
import { uuid } from "../contracts/ids";

const sku = Joi.string().trim().min(1).max(100);
const idempotencyKey = Joi.string().max(200);
const reason = Joi.string().trim().min(1).max(200);

interface Change {
	onHand: number;
	reserved: number;
	change: "created" | "set" | "adjusted" | "reserved" | "released" | "deducted" | "held" | "unheld";
	reason?: string | null;
	orderId?: string | null;
}

interface Methods {
	lockOrder(orderId: string, trx: Trx): Promise<void>;
	lockRows(skus: string[], trx: Trx): Promise<StockRow[]>;
	heldBy(orderId: string, trx: Trx): Promise<Line[]>;
	productOf(ctx: Ctx, sku: string): Promise<{ id: string; sku: string; name?: string; variants: Array<{ id: string; sku: string }> } | null>;
	setSellable(event: EventEnvelope, sellable: boolean): Promise<void>;
	setHold(trx: Trx, cartId: string, lines: Line[], ttlMs: number, ctx: Ctx | null): Promise<Line[]>;
	expireHolds(): Promise<number>;
	takeHolds(trx: Trx, cartId: string): Promise<Map<string, number>>;
	apply(trx: Trx, row: StockRow, change: Change, ctx: Ctx | EventEnvelope | null): Promise<StockRow>;
	actor(ctx: Ctx | null): string;
}

interface Vars {
	holdExpiry: { timer: NodeJS.Timeout | null; running: boolean };
}

type This = ServiceThis<Methods, Vars>;

export default defineService<Methods, Vars>({
	name: "inventory",
	mixins: [DbMixin("inventory"), OutboxMixin()],

	actions: {
		get: {
			rest: "GET /api/inventory/:sku",
			params: Joi.object({ sku: sku.required() }),
			async handler(ctx) {
				const row = await this.table("stock").where({ sku: ctx.params.sku }).first();
				if (!row) throw notFound("Stock of SKU", ctx.params.sku);
				return view(row);
			}
		},

		/** Stock of these SKUs; with `cartId`, `available` also counts what that cart holds (it may keep it). */
		getMany: {
			params: Joi.object({ skus: Joi.array().items(sku).max(200).required(), cartId: uuid }),
			async handler(ctx) {
				if (ctx.params.skus.length === 0) return [];
				const rows = (await this.table("stock").whereIn("sku", ctx.params.skus)).map(view);
				if (!ctx.params.cartId) return rows;
				const held = new Map((await this.table("holds").where({ cart_id: ctx.params.cartId }).whereIn("sku", ctx.params.skus)).map((h: any) => [h.sku, h.quantity]));
				return rows.map((r: any) => ({ ...r, available: r.available + (held.get(r.sku) ?? 0), heldByCart: held.get(r.sku) ?? 0 }));
			}
		},

		set: {
			rest: "PUT /api/inventory/:sku",
			params: Joi.object({ sku: sku.required(), quantity: Joi.number().integer().min(0).max(1_000_000_000).required(), reason: reason.required(), idempotencyKey }),
			async handler(ctx) {
				const { sku, quantity, reason } = ctx.params;
				// A SKU the catalog knows but whose product.created has not arrived yet gets its row now
				// (asked before the transaction: no remote call inside one).
				const exists = await this.table("stock").where({ sku }).first();
				const product = exists ? null : await this.productOf(ctx, sku);
				if (!exists && !product) throw notFound("Product of SKU", sku);
				return this.idempotent(writeKey(ctx, "inventory.set", `${ctx.meta.user?.id ?? ""}\n${sku}`), "inventory.set", async trx => {
					if (product) {
						const variantId = product.variants.find(v => v.sku === sku)?.id ?? null;
						await this.table("stock", trx).insert({ sku, product_id: product.id, product_name: product.name ?? null, variant_id: variantId, on_hand: 0, reserved: 0, low_stock_threshold: 5 }).onConflict("sku").ignore();
					}
					const [row] = await this.lockRows([sku], trx);
					const refusal = onHandRefusal(row!, quantity);
					if (refusal) throw conflict("NEGATIVE_STOCK", `Cannot set ${sku} to ${quantity}: ${refusal}`, { sku, onHand: row!.on_hand, reserved: row!.reserved, requested: quantity });
					const previous = row!.on_hand;
					const after = await this.apply(trx, row!, { onHand: quantity - previous, reserved: 0, change: "set", reason }, ctx);
					await this.record(trx, "inventory.quantity_set", sku, { sku, productId: after.product_id, previousValue: previous, newValue: quantity, reason, userId: ctx.meta.user?.id ?? null }, ctx);
					return view(after);
				});
			}
		},

		adjust: {
			rest: "POST /api/inventory/:sku/adjustments",
			params: Joi.object({ sku: sku.required(), adjustment: Joi.number().integer().invalid(0).min(-1_000_000_000).max(1_000_000_000).required(), reason: reason.required(), idempotencyKey }),
			async handler(ctx) {
				const { sku, adjustment, reason } = ctx.params;
				return this.idempotent(writeKey(ctx, "inventory.adjust", `${ctx.meta.user?.id ?? ""}\n${sku}`), "inventory.adjust", async trx => {
					const [row] = await this.lockRows([sku], trx);
					if (!row) throw notFound("Stock of SKU", sku);
					const refusal = onHandRefusal(row, row.on_hand + adjustment);
					if (refusal) throw conflict("NEGATIVE_STOCK", `Cannot adjust ${sku} by ${adjustment}: ${refusal}`, { sku, onHand: row.on_hand, reserved: row.reserved, adjustment });
					const previous = row.on_hand;
					const after = await this.apply(trx, row, { onHand: adjustment, reserved: 0, change: "adjusted", reason }, ctx);
					await this.record(trx, "inventory.adjusted", sku, { sku, productId: after.product_id, adjustment, previousValue: previous, newValue: after.on_hand, reason, userId: ctx.meta.user?.id ?? null }, ctx);
					return view(after);
				});
			}
		},

		reserve: {
			params: Joi.object({
				orderId: uuid.required(),
				lines: Joi.array().items(Joi.object({ sku: sku.required(), quantity: Joi.number().integer().min(1).max(1_000_000).required() })).min(1).max(100).required(),
				// The cart the order comes from: what it holds (soft reservation) becomes the order's reservation.
				cartId: uuid,
				idempotencyKey
			}),
			async handler(ctx) {
				const { orderId, cartId } = ctx.params;
				const lines = normalizeLines(ctx.params.lines);
				return this.idempotent(ctx.params.idempotencyKey, "inventory.reserve", async trx => {
					await this.lockOrder(orderId, trx);
					// An order holds one reservation, however often (and with whatever key) it asks.
					const held = await this.heldBy(orderId, trx);
					if (held.length > 0) return { orderId, lines: held };
					// In the same transaction, the cart's hold is handed over: no moment when another shopper
					// could take the held units, and a refusal leaves the hold as it was (the rollback).
					const holds = cartId ? await this.takeHolds(trx, cartId) : new Map<string, number>();
					const rows = await this.lockRows([...lines.map(l => l.sku), ...holds.keys()], trx);
					const unsellable = rows.find(r => r.sellable === false && lines.some(l => l.sku === r.sku));
					if (unsellable) throw conflict("PRODUCT_INACTIVE", `SKU ${unsellable.sku} belongs to a product that is no longer for sale; nothing was reserved`, { sku: unsellable.sku });
					const plan = planReservation(rows.map(r => ({ ...r, reserved: r.reserved - (holds.get(r.sku) ?? 0) })), lines);
					if (!plan.ok) {
						throw conflict("OUT_OF_STOCK", `Only ${plan.available} of ${plan.sku} available, ${plan.requested} requested; nothing was reserved`, { sku: plan.sku, requested: plan.requested, available: plan.available });
					}
					for (const [heldSku, quantity] of holds) {
						if (lines.some(l => l.sku === heldSku)) continue;
						await this.apply(trx, rows.find(r => r.sku === heldSku)!, { onHand: 0, reserved: -quantity, change: "unheld", reason: `cart ${cartId} checked out` }, ctx);
					}
					for (const line of lines) {
						const row = rows.find(r => r.sku === line.sku)!;
						// What the cart held is already counted as reserved: only the rest is added.
						await this.apply(trx, row, { onHand: 0, reserved: line.quantity - (holds.get(line.sku) ?? 0), change: "reserved", orderId }, ctx);
						await this.table("reservations", trx).insert({ order_id: orderId, sku: line.sku, quantity: line.quantity, status: "held" }).onConflict(["order_id", "sku"]).merge({ quantity: line.quantity, status: "held", updated_at: this.knex.fn.now() });
					}
					await this.record(trx, "inventory.reserved", orderId, { orderId, lines }, ctx);
					return { orderId, lines };
				});
			}
		},

		/**
		 * Gives an order's reserved stock back: all of it, or with `lines` only those units (never
		 * more than the order holds of a SKU: EXCEEDS_RESERVED, nothing released).
		 */
		release: {
			params: Joi.object({
				orderId: uuid.required(),
				reason: Joi.string().max(1000).allow(null, ""),
				lines: Joi.array().items(Joi.object({ sku: sku.required(), quantity: Joi.number().integer().min(1).max(1_000_000).required() })).min(1).max(100),
				idempotencyKey
			}),
			async handler(ctx) {
				const { orderId } = ctx.params;
				const reason = ctx.params.reason || null;
				return this.idempotent(ctx.params.idempotencyKey, "inventory.release", async trx => {
					await this.lockOrder(orderId, trx);
					// The saga's compensation: an order that never reserved (or was released already) is a no-op.
					const held = await this.heldBy(orderId, trx);
					// Stock that left the warehouse with a shipment cannot come back by a release: the
					// cancellation of an order that shipped meanwhile is refused here, before anything moved.
					if (held.length === 0 && await this.table("reservations", trx).where({ order_id: orderId, status: "deducted" }).first()) {
						throw conflict("INVALID_TRANSITION", `Order ${orderId} has shipped: its stock was deducted and cannot be released`, { orderId });
					}
					const lines = ctx.params.lines ? normalizeLines(ctx.params.lines) : held;
					for (const l of lines) {
						const h = held.find(x => x.sku === l.sku)?.quantity ?? 0;
						if (l.quantity > h) throw conflict("EXCEEDS_RESERVED", `Order ${orderId} holds ${h} of ${l.sku}; ${l.quantity} cannot be released`, { sku: l.sku, reserved: h, requested: l.quantity });
					}
					if (lines.length === 0) return { orderId, lines: [] };
					const rows = await this.lockRows(lines.map(l => l.sku), trx);
					for (const l of lines) {
						await this.apply(trx, rows.find(r => r.sku === l.sku)!, { onHand: 0, reserved: -l.quantity, change: "released", orderId, reason }, ctx);
						const left = held.find(x => x.sku === l.sku)!.quantity - l.quantity;
						await this.table("reservations", trx)
							.where({ order_id: orderId, sku: l.sku, status: "held" })
							.update(left > 0 ? { quantity: left, updated_at: this.knex.fn.now() } : { status: "released", updated_at: this.knex.fn.now() });
					}
					await this.record(trx, "inventory.released", orderId, { orderId, lines, reason, partial: !!ctx.params.lines && lines.some(l => held.find(h => h.sku === l.sku)!.quantity > l.quantity) }, ctx);
					return { orderId, lines };
				});
			}
		},

		deduct: {
			params: Joi.object({ orderId: uuid.required(), idempotencyKey }),
			async handler(ctx) {
				const { orderId } = ctx.params;
				return this.idempotent(ctx.params.idempotencyKey, "inventory.deduct", async trx => {
					await this.lockOrder(orderId, trx);
					const lines = await this.heldBy(orderId, trx);
					if (lines.length === 0) throw conflict("INVALID_TRANSITION", "This order holds no reserved stock to deduct (never reserved, released, or deducted already)", { orderId });
					const rows = await this.lockRows(lines.map(l => l.sku), trx);
					for (const l of lines) {
						await this.apply(trx, rows.find(r => r.sku === l.sku)!, { onHand: -l.quantity, reserved: -l.quantity, change: "deducted", orderId, reason: "shipped" }, ctx);
					}
					await this.table("reservations", trx).where({ order_id: orderId, status: "held" }).update({ status: "deducted", updated_at: this.knex.fn.now() });
					await this.record(trx, "inventory.deducted", orderId, { orderId, lines }, ctx);
					return { orderId, lines };
				});
			}
		},

		/** Operators: what an order holds or held (reservation lines with their status: held, released, deducted). */
		reservationOf: {
			visibility: "public",
			params: Joi.object({ orderId: uuid.required() }),
			async handler(ctx) {
				const rows = await this.table("reservations").where({ order_id: ctx.params.orderId }).orderBy("sku");
				return rows.map((r: any) => ({ sku: r.sku, quantity: r.quantity, status: r.status, updatedAt: r.updated_at ? new Date(r.updated_at).toISOString() : null }));
			}
		},

		/**
		 * A cart's soft reservation: the cart now holds exactly these lines (none: it holds nothing),
		 * for `ttlMs`. More than is available (counting what the cart held already) is OUT_OF_STOCK
		 * and changes nothing.
		 */
		hold: {
			params: Joi.object({
				cartId: uuid.required(),
				lines: Joi.array().items(Joi.object({ sku: sku.required(), quantity: Joi.number().integer().min(1).max(1_000_000).required() })).max(100).required(),
				ttlMs: Joi.number().integer().min(1000).max(30 * 24 * 3600_000).default(15 * 60_000)
			}),
			async handler(ctx) {
				return this.transaction(async trx => ({ cartId: ctx.params.cartId, lines: await this.setHold(trx, ctx.params.cartId, normalizeLines(ctx.params.lines), ctx.params.ttlMs, ctx) }));
			}
		},

		audit: {
			rest: "GET /api/inventory/:sku/audit",
			params: Joi.object({ sku: sku.required(), page, pageSize }),
			async handler(ctx) {
				const { page, pageSize } = ctx.params;
				if (!(await this.table("stock").where({ sku: ctx.params.sku }).first())) throw notFound("Stock of SKU", ctx.params.sku);
				const [{ n }] = await this.table("audit").where({ sku: ctx.params.sku }).count<{ n: string }[]>("* as n");
				const rows = await this.table("audit").where({ sku: ctx.params.sku }).orderBy("id", "desc").limit(pageSize).offset((page - 1) * pageSize);
				return {
					rows: rows.map((r: any) => ({
						id: Number(r.id), change: r.change, onHandDelta: r.on_hand_delta, reservedDelta: r.reserved_delta,
						onHandBefore: r.on_hand_after - r.on_hand_delta, onHandAfter: r.on_hand_after, reservedBefore: r.reserved_after - r.reserved_delta, reservedAfter: r.reserved_after,
						reason: r.reason, orderId: r.order_id, actor: r.actor, at: r.at
					})),
					total: Number(n),
					page,
					pageSize
				};
			}
		}
	},

	channels: {
		/** A new product gets its stock row (one per variant when it has variants) with the initial quantity. */
		"product.created": {
			async handler(event) {
				const p = event.payload;
				const threshold = p.lowStockThreshold ?? 5;
				const skus: Array<{ sku: string; variantId: string | null; initialStock: number }> =
					Array.isArray(p.variants) && p.variants.length > 0
						? p.variants.map((v: any) => ({ sku: v.sku, variantId: v.variantId ?? null, initialStock: v.initialStock ?? p.initialStock ?? 0 }))
						: [{ sku: p.sku, variantId: null, initialStock: p.initialStock ?? 0 }];
				await this.handleOnce(event, "inventory.onProductCreated", async trx => {
					for (const s of skus) {
						const inserted = await this.table("stock", trx)
							.insert({ sku: s.sku, product_id: p.productId, product_name: p.name ?? null, variant_id: s.variantId, on_hand: 0, reserved: 0, low_stock_threshold: threshold })
							.onConflict("sku")
							.ignore()
							.returning("*");
						if (inserted.length === 0) {
							// An admin's inventory.set came first and created the row: its quantity stands, the product's threshold applies.
							await this.table("stock", trx).where({ sku: s.sku }).update({ low_stock_threshold: threshold, variant_id: s.variantId, product_name: p.name ?? null });
							continue;
						}
						const row = await this.apply(trx, inserted[0], { onHand: s.initialStock, reserved: 0, change: "created", reason: "product created" }, event);
						await this.record(trx, "inventory.created", row.sku, {
							sku: row.sku, productId: row.product_id, variantId: s.variantId, quantity: row.on_hand, available: available(row),
							lowStockThreshold: row.low_stock_threshold, version: Number(row.version)
						}, event);
					}
				});
			}
		},

		/** A renamed product: its stock alerts say the new name. */
		"product.updated": {
			async handler(event) {
				const p = event.payload as any;
				const name = p?.changedFields?.name?.to;
				if (typeof p?.productId !== "string" || typeof name !== "string") return;
				await this.table("stock").where({ product_id: p.productId }).update({ product_name: name });
			}
		},

		/** Deleted or deactivated: the stock stays for history, but takes no new reservations. */
		"product.deleted": {
			async handler(event) {
				await this.setSellable(event, false);
			}
		},
		"product.deactivated": {
			async handler(event) {
				await this.setSellable(event, false);
			}
		},
		"product.activated": {
			async handler(event) {
				await this.setSellable(event, true);
			}
		}
	},

	methods: {
		/** Replaces a cart's holds with `lines`, under the cart's advisory lock and the rows' locks in SKU order. */
		async setHold(this: This, trx: Trx, cartId: string, lines: Line[], ttlMs: number, ctx: Ctx | null): Promise<Line[]> {
			await this.lockOrder(`cart:${cartId}`, trx);
			const old: Array<{ sku: string; quantity: number }> = await this.table("holds", trx).where({ cart_id: cartId });
			const rows = await this.lockRows([...old.map(o => o.sku), ...lines.map(l => l.sku)], trx);
			for (const l of lines) {
				const row = rows.find(r => r.sku === l.sku);
				const had = old.find(o => o.sku === l.sku)?.quantity ?? 0;
				const free = row && row.sellable !== false ? available(row) + had : had;
				if (l.quantity > free) throw conflict("OUT_OF_STOCK", `Only ${free} of ${l.sku} can be held for this cart, ${l.quantity} asked`, { sku: l.sku, requested: l.quantity, available: free });
			}
			const expiresAt = new Date(Date.now() + ttlMs);
			for (const row of rows) {
				const had = old.find(o => o.sku === row.sku)?.quantity ?? 0;
				const wants = lines.find(l => l.sku === row.sku)?.quantity ?? 0;
				if (wants !== had) await this.apply(trx, row, { onHand: 0, reserved: wants - had, change: wants > had ? "held" : "unheld", reason: `cart ${cartId}` }, ctx);
				if (wants === 0) await this.table("holds", trx).where({ cart_id: cartId, sku: row.sku }).delete();
				else await this.table("holds", trx).insert({ cart_id: cartId, sku: row.sku, quantity: wants, expires_at: expiresAt }).onConflict(["cart_id", "sku"]).merge();
			}
			return lines;
		},

		/** Removes a cart's holds under the cart's lock and answers them (SKU → quantity); the stock rows are left to the caller. */
		async takeHolds(this: This, trx: Trx, cartId: string): Promise<Map<string, number>> {
			await this.lockOrder(`cart:${cartId}`, trx);
			const rows: Array<{ sku: string; quantity: number }> = await this.table("holds", trx).where({ cart_id: cartId }).delete().returning(["sku", "quantity"]);
			return new Map(rows.map(r => [r.sku, r.quantity]));
		},

		/** Holds past their time give their stock back: one replica at a time, a batch per run. */
		async expireHolds(this: This): Promise<number> {
			return this.transaction(async trx => {
				const lock = await trx.raw("SELECT pg_try_advisory_xact_lock(hashtextextended(?, 0)) AS ok", [`${this.schemaName}.expire-holds`]);
				if (!(lock.rows ?? lock)[0]?.ok) return 0;
				const carts: string[] = await this.table("holds", trx).where("expires_at", "<", new Date()).distinct("cart_id").limit(100).pluck("cart_id");
				// A cart's holds are set together and expire together.
				for (const cartId of carts) await this.setHold(trx, cartId, [], 60_000, null);
				return carts.length;
			});
		},

		async setSellable(this: This, event: EventEnvelope, sellable: boolean) {
			const productId = event?.payload?.productId;
			if (typeof productId !== "string") return;
			await this.handleOnce(event, `inventory.sellable.${event.event_name}`, async trx => {
				// A product deleted stays unsellable, whatever activation arrives late.
				const q = this.table("stock", trx).where({ product_id: productId });
				if (sellable) q.whereNotExists(this.table("deleted_products", trx).where({ product_id: productId }));
				await q.update({ sellable });
				if (event.event_name === "product.deleted") await this.table("deleted_products", trx).insert({ product_id: productId }).onConflict("product_id").ignore();
			});
		},

		/** One order at a time, across replicas: held until the transaction ends. */
		async lockOrder(this: This, orderId: string, trx: Trx): Promise<void> {
			await trx.raw("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", [`${this.schemaName}.order:${orderId}`]);
		},

		async heldBy(this: This, orderId: string, trx: Trx): Promise<Line[]> {
			const rows = await this.table("reservations", trx).where({ order_id: orderId, status: "held" }).orderBy("sku");
			return rows.map((r: any) => ({ sku: r.sku, quantity: r.quantity }));
		},

		/** The catalog's product for a SKU, null when it has none; a catalog that does not answer is a temporary failure, not a 404. */
		async productOf(this: This, ctx: Ctx, sku: string) {
			try {
				return await ctx.call<any, any>("catalog.productOfSku", { sku }, { timeout: 5000 });
			} catch (err: any) {
				if (err?.code === 404 || err?.code === 422) return null;
				throw temporary(`The catalog did not answer whether SKU ${sku} exists; try again`, { sku });
			}
		},

		async lockRows(this: This, skus: string[], trx: Trx): Promise<StockRow[]> {
			const ordered = [...new Set(skus)].sort();
			return this.table("stock", trx).whereIn("sku", ordered).orderBy("sku").forUpdate();
		},

		/** Changes one stock row, writes its audit row, and raises the alerts the change causes. */
		async apply(this: This, trx: Trx, row: StockRow, change: Change, cause: Ctx | EventEnvelope | null): Promise<StockRow> {
			const [after] = await this.table("stock", trx)
				.where({ sku: row.sku })
				.update({ on_hand: row.on_hand + change.onHand, reserved: row.reserved + change.reserved, version: this.knex.raw("version + 1"), updated_at: this.knex.fn.now() })
				.returning("*");
			await this.table("audit", trx).insert({
				sku: row.sku, change: change.change, on_hand_delta: change.onHand, reserved_delta: change.reserved,
				on_hand_after: after.on_hand, reserved_after: after.reserved, reason: change.reason ?? null, order_id: change.orderId ?? null,
				actor: this.actor(cause && "meta" in cause ? (cause as Ctx) : null)
			});
			Object.assign(row, after);
			const payload = {
				sku: after.sku, productId: after.product_id, variantId: after.variant_id ?? null, onHand: after.on_hand, reserved: after.reserved, available: available(after),
				lowStockThreshold: after.low_stock_threshold, version: Number(after.version), change: change.change
			};
			// A new row is announced by inventory.created, and crosses nothing: alerts are for stock that falls, not stock that starts low.
			if (change.change === "created") return after;
			await this.record(trx, "inventory.updated", after.sku, payload, cause);
			const before = available({ on_hand: after.on_hand - change.onHand, reserved: after.reserved - change.reserved });
			for (const alert of alertsFor(before, available(after), after.low_stock_threshold)) {
				const alertPayload = { ...payload, productName: after.product_name ?? null, currentStock: payload.available, threshold: after.low_stock_threshold };
				await this.record(trx, alert === "low_stock" ? "inventory.low_stock" : "inventory.out_of_stock", after.sku, alertPayload, cause);
				const product = { productId: after.product_id, productName: after.product_name ?? null, sku: after.sku };
				if (alert === "low_stock") {
					await this.recordIntegration(trx, "LowStockNotification", after.product_id, { ...product, currentStock: payload.available, threshold: after.low_stock_threshold }, cause);
				} else {
					await this.recordIntegration(trx, "OutOfStockNotification", after.product_id, product, cause);
				}
			}
			return after;
		},

		actor(ctx: Ctx | null): string {
			const user = ctx?.meta?.user;
			if (user) return `${user.role}:${user.id}`;
			return ctx?.meta?.sagaId ? `saga:${ctx.meta.sagaId}` : "system";
		}
	}
,

	created() {
		this.holdExpiry = { timer: null, running: false };
	},

	async started() {
		const intervalMs = readSettings().holdExpiryIntervalMs;
		if (intervalMs <= 0) return;
		this.holdExpiry.timer = setInterval(() => {
			if (this.holdExpiry.running) return;
			this.holdExpiry.running = true;
			this.schemaReady
				.then(() => this.expireHolds())
				.catch(err => this.logger.warn(`Expiring cart holds failed: ${err.message}`))
				.finally(() => (this.holdExpiry.running = false));
		}, intervalMs);
	},

	async stopped() {
		if (this.holdExpiry.timer) clearInterval(this.holdExpiry.timer);
		while (this.holdExpiry.running) await new Promise(r => setTimeout(r, 10));
	}
});
