/**
 * inventory — stock per SKU: on hand, reserved, available. Reservations hold stock for an
 * order (all lines or none); release gives it back; deduct takes it out on shipment. Stock
 * never goes negative (row locks in SKU order, plus a CHECK constraint), and every change
 * leaves an audit row in the same transaction.
 */
import Joi from "joi";
import type { Knex } from "knex";
import { conflict, notFound } from "../contracts/errors";
import type { EventEnvelope } from "../contracts/events";
import { DbMixin } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { Ctx, defineService, ServiceThis } from "../mixins/service";
import { alertsFor, available, normalizeLines, planReservation, StockRow, view } from "./inventory/stock";

const sku = Joi.string().trim().min(1).max(100);
const uuid = Joi.string().guid();
const idempotencyKey = Joi.string().max(200);
const reason = Joi.string().trim().min(1).max(200);

interface Change {
	onHand: number;
	reserved: number;
	change: "created" | "set" | "adjusted" | "reserved" | "released" | "deducted";
	reason?: string | null;
	orderId?: string | null;
}

interface Methods {
	lockRows(skus: string[], trx: Knex.Transaction): Promise<StockRow[]>;
	apply(trx: Knex.Transaction, row: StockRow, change: Change, ctx: Ctx | EventEnvelope | null): Promise<StockRow>;
	actor(ctx: Ctx | null): string;
}

type This = ServiceThis<Methods>;

export default defineService<Methods>({
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

		getMany: {
			params: Joi.object({ skus: Joi.array().items(sku).max(200).required() }),
			async handler(ctx) {
				if (ctx.params.skus.length === 0) return [];
				return (await this.table("stock").whereIn("sku", ctx.params.skus)).map(view);
			}
		},

		set: {
			rest: "PUT /api/inventory/:sku",
			params: Joi.object({ sku: sku.required(), quantity: Joi.number().integer().min(0).max(1_000_000_000).required(), reason: reason.required(), idempotencyKey }),
			async handler(ctx) {
				const { quantity } = ctx.params;
				// A SKU the catalog knows but whose product.created has not arrived yet gets its row now.
				const exists = await this.table("stock").where({ sku: ctx.params.sku }).first();
				const product = exists ? null : await ctx.call<any, any>("catalog.getProduct", { id: ctx.params.sku, includeInactive: true }).catch(() => null);
				if (!exists && !product) throw notFound("Product of SKU", ctx.params.sku);
				return this.idempotent(ctx.params.idempotencyKey, "inventory.set", async trx => {
					if (!exists) {
						await this.table("stock", trx).insert({ sku: product.sku, product_id: product.id, on_hand: 0, reserved: 0, low_stock_threshold: 5 }).onConflict("sku").ignore();
					}
					const [row] = await this.lockRows([ctx.params.sku], trx);
					if (quantity < row!.reserved) {
						throw conflict("NEGATIVE_STOCK", `${row!.reserved} units are reserved for orders; on hand cannot go below that`, { sku: row!.sku, reserved: row!.reserved, requested: quantity });
					}
					const after = await this.apply(trx, row!, { onHand: quantity - row!.on_hand, reserved: 0, change: "set", reason: ctx.params.reason }, ctx);
					await this.record(trx, "inventory.quantity_set", after.sku, { sku: after.sku, productId: after.product_id, previousQuantity: row!.on_hand, quantity, reason: ctx.params.reason }, ctx);
					return view(after);
				});
			}
		},

		adjust: {
			rest: "POST /api/inventory/:sku/adjustments",
			params: Joi.object({ sku: sku.required(), adjustment: Joi.number().integer().invalid(0).min(-1_000_000_000).max(1_000_000_000).required(), reason: reason.required(), idempotencyKey }),
			async handler(ctx) {
				const { adjustment } = ctx.params;
				return this.idempotent(ctx.params.idempotencyKey, "inventory.adjust", async trx => {
					const [row] = await this.lockRows([ctx.params.sku], trx);
					if (!row) throw notFound("Stock of SKU", ctx.params.sku);
					if (row.on_hand + adjustment < row.reserved) {
						throw conflict("NEGATIVE_STOCK", `Adjusting by ${adjustment} would leave ${row.on_hand + adjustment} on hand with ${row.reserved} reserved`, { sku: row.sku, onHand: row.on_hand, reserved: row.reserved, adjustment });
					}
					const after = await this.apply(trx, row, { onHand: adjustment, reserved: 0, change: "adjusted", reason: ctx.params.reason }, ctx);
					await this.record(trx, "inventory.adjusted", after.sku, { sku: after.sku, productId: after.product_id, adjustment, quantity: after.on_hand, reason: ctx.params.reason }, ctx);
					return view(after);
				});
			}
		},

		reserve: {
			params: Joi.object({
				orderId: uuid.required(),
				lines: Joi.array().items(Joi.object({ sku: sku.required(), quantity: Joi.number().integer().min(1).max(1_000_000).required() })).min(1).max(100).required(),
				idempotencyKey
			}),
			async handler(ctx) {
				const { orderId } = ctx.params;
				const lines = normalizeLines(ctx.params.lines);
				return this.idempotent(ctx.params.idempotencyKey, "inventory.reserve", async trx => {
					const rows = await this.lockRows(lines.map(l => l.sku), trx);
					// An order holds one reservation, however often it asks.
					const held = await this.table("reservations", trx).where({ order_id: orderId, status: "held" });
					if (held.length > 0) return { orderId, lines: held.map((r: any) => ({ sku: r.sku, quantity: r.quantity })) };
					const plan = planReservation(rows, lines);
					if (!plan.ok) throw conflict("OUT_OF_STOCK", `Only ${plan.available} of ${plan.sku} available, ${plan.requested} requested`, plan);
					for (const line of lines) {
						const row = rows.find(r => r.sku === line.sku)!;
						await this.apply(trx, row, { onHand: 0, reserved: line.quantity, change: "reserved", orderId }, ctx);
						await this.table("reservations", trx).insert({ order_id: orderId, sku: line.sku, quantity: line.quantity, status: "held" }).onConflict(["order_id", "sku"]).merge({ quantity: line.quantity, status: "held", updated_at: this.knex.fn.now() });
					}
					await this.record(trx, "inventory.reserved", orderId, { orderId, lines }, ctx);
					return { orderId, lines };
				});
			}
		},

		release: {
			params: Joi.object({ orderId: uuid.required(), reason: Joi.string().max(1000).allow(null, ""), idempotencyKey }),
			async handler(ctx) {
				const { orderId } = ctx.params;
				return this.idempotent(ctx.params.idempotencyKey, "inventory.release", async trx => {
					const held = await this.table("reservations", trx).where({ order_id: orderId, status: "held" }).orderBy("sku");
					if (held.length === 0) return { orderId, lines: [] };
					const rows = await this.lockRows(held.map((h: any) => h.sku), trx);
					for (const h of held) {
						await this.apply(trx, rows.find(r => r.sku === h.sku)!, { onHand: 0, reserved: -h.quantity, change: "released", orderId, reason: ctx.params.reason || null }, ctx);
					}
					await this.table("reservations", trx).where({ order_id: orderId, status: "held" }).update({ status: "released", updated_at: this.knex.fn.now() });
					const lines = held.map((h: any) => ({ sku: h.sku, quantity: h.quantity }));
					await this.record(trx, "inventory.released", orderId, { orderId, lines, reason: ctx.params.reason || null }, ctx);
					return { orderId, lines };
				});
			}
		},

		deduct: {
			params: Joi.object({ orderId: uuid.required(), idempotencyKey }),
			async handler(ctx) {
				const { orderId } = ctx.params;
				return this.idempotent(ctx.params.idempotencyKey, "inventory.deduct", async trx => {
					const held = await this.table("reservations", trx).where({ order_id: orderId, status: "held" }).orderBy("sku");
					if (held.length === 0) throw conflict("INVALID_TRANSITION", "This order holds no reserved stock to deduct", { orderId });
					const rows = await this.lockRows(held.map((h: any) => h.sku), trx);
					for (const h of held) {
						await this.apply(trx, rows.find(r => r.sku === h.sku)!, { onHand: -h.quantity, reserved: -h.quantity, change: "deducted", orderId }, ctx);
					}
					await this.table("reservations", trx).where({ order_id: orderId, status: "held" }).update({ status: "deducted", updated_at: this.knex.fn.now() });
					const lines = held.map((h: any) => ({ sku: h.sku, quantity: h.quantity }));
					await this.record(trx, "inventory.deducted", orderId, { orderId, lines }, ctx);
					return { orderId, lines };
				});
			}
		},

		audit: {
			rest: "GET /api/inventory/:sku/audit",
			params: Joi.object({ sku: sku.required(), page: Joi.number().integer().min(1).default(1), pageSize: Joi.number().integer().min(1).max(100).default(20) }),
			async handler(ctx) {
				const { page, pageSize } = ctx.params;
				if (!(await this.table("stock").where({ sku: ctx.params.sku }).first())) throw notFound("Stock of SKU", ctx.params.sku);
				const [{ n }] = await this.table("audit").where({ sku: ctx.params.sku }).count<{ n: string }[]>("* as n");
				const rows = await this.table("audit").where({ sku: ctx.params.sku }).orderBy("id", "desc").limit(pageSize).offset((page - 1) * pageSize);
				return {
					rows: rows.map((r: any) => ({
						id: Number(r.id), change: r.change, onHandDelta: r.on_hand_delta, reservedDelta: r.reserved_delta, onHandAfter: r.on_hand_after, reservedAfter: r.reserved_after,
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
		/** A new product gets its stock row with the initial quantity. */
		"product.created": {
			async handler(event) {
				const p = event.payload;
				await this.handleOnce(event, "inventory.onProductCreated", async trx => {
					const inserted = await this.table("stock", trx)
						.insert({ sku: p.sku, product_id: p.productId, on_hand: 0, reserved: 0, low_stock_threshold: p.lowStockThreshold ?? 5 })
						.onConflict("sku")
						.ignore()
						.returning("*");
					if (inserted.length === 0) return;
					const row = await this.apply(trx, inserted[0], { onHand: p.initialStock ?? 0, reserved: 0, change: "created", reason: "product created" }, event);
					await this.record(trx, "inventory.created", row.sku, { sku: row.sku, productId: row.product_id, quantity: row.on_hand, lowStockThreshold: row.low_stock_threshold }, event);
				});
			}
		}
	},

	methods: {
		async lockRows(this: This, skus: string[], trx: Knex.Transaction): Promise<StockRow[]> {
			const ordered = [...new Set(skus)].sort();
			return this.table("stock", trx).whereIn("sku", ordered).orderBy("sku").forUpdate();
		},

		/** Changes one stock row, writes its audit row, and raises the alerts the change causes. */
		async apply(this: This, trx: Knex.Transaction, row: StockRow, change: Change, cause: Ctx | EventEnvelope | null): Promise<StockRow> {
			const [after] = await this.table("stock", trx)
				.where({ sku: row.sku })
				.update({ on_hand: row.on_hand + change.onHand, reserved: row.reserved + change.reserved, updated_at: this.knex.fn.now() })
				.returning("*");
			await this.table("audit", trx).insert({
				sku: row.sku, change: change.change, on_hand_delta: change.onHand, reserved_delta: change.reserved,
				on_hand_after: after.on_hand, reserved_after: after.reserved, reason: change.reason ?? null, order_id: change.orderId ?? null,
				actor: this.actor(cause && "meta" in cause ? (cause as Ctx) : null)
			});
			Object.assign(row, after);
			const payload = { sku: after.sku, productId: after.product_id, onHand: after.on_hand, reserved: after.reserved, available: available(after), lowStockThreshold: after.low_stock_threshold };
			if (change.onHand !== 0) await this.record(trx, "inventory.updated", after.sku, payload, cause);
			const before = change.change === "created" ? Number.POSITIVE_INFINITY : available({ on_hand: after.on_hand - change.onHand, reserved: after.reserved - change.reserved });
			for (const alert of alertsFor(before, available(after), after.low_stock_threshold)) {
				await this.record(trx, alert === "low_stock" ? "inventory.low_stock" : "inventory.out_of_stock", after.sku, payload, cause);
			}
			return after;
		},

		actor(ctx: Ctx | null): string {
			const user = ctx?.meta?.user;
			if (user) return `${user.role}:${user.id}`;
			return ctx?.meta?.sagaId ? `saga:${ctx.meta.sagaId}` : "system";
		}
	}
});
