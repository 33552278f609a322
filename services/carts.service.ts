/**
 * carts — a customer's cart: add, change, remove, read with current prices and totals.
 * The checkout saga locks the cart while it runs (changes answer 409 CART_LOCKED), and
 * empties it once the order is confirmed.
 */
import Joi from "joi";
import { randomUUID } from "node:crypto";
import type { Knex } from "knex";
import { conflict, isClientError, notFound, temporary, unauthorized } from "../contracts/errors";
import { DbMixin } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { Ctx, defineService, ServiceThis } from "../mixins/service";
import { cappedQuantity, CartItemRow, cartTotal, priceLines, ProductInfo, MAX_LINE_QUANTITY } from "./carts/cart";

const uuid = Joi.string().guid({ version: ["uuidv4", "uuidv5", "uuidv7"] });
const quantity = Joi.number().integer().strict(false).min(0).max(MAX_LINE_QUANTITY);

interface CartRow {
	id: string;
	customer_id: string | null;
	status: string;
	locked_by: string | null;
	locked_at?: Date | string | null;
	order_id: string | null;
}

/** The answer when the stock cannot be checked (inventory unreachable): retry soon. */
function stockUnknown(productId: string) {
	return temporary("The stock of this product cannot be checked right now; try again in a moment", { productId });
}

interface Methods {
	customerId(ctx: Ctx): string;
	activeCart(customerId: string, trx?: Knex.Transaction): Promise<CartRow>;
	items(cartId: string, trx?: Knex.Transaction): Promise<CartItemRow[]>;
	view(ctx: Ctx, cart: CartRow): Promise<any>;
	products(ctx: Ctx, ids: string[]): Promise<ProductInfo[]>;
	lockedCart(cartId: string, trx: Knex.Transaction): Promise<CartRow>;
	editable(cart: CartRow): void;
}

type This = ServiceThis<Methods>;

export default defineService<Methods>({
	name: "carts",
	mixins: [DbMixin("carts"), OutboxMixin()],

	actions: {
		get: {
			rest: "GET /api/cart",
			params: Joi.object({}),
			async handler(ctx) {
				return this.view(ctx, await this.activeCart(this.customerId(ctx)));
			}
		},

		addItem: {
			rest: "POST /api/cart/items",
			params: Joi.object({ productId: uuid.required(), variantId: Joi.string().max(100), quantity: quantity.min(1).required() }),
			async handler(ctx) {
				const { productId, quantity: requested } = ctx.params;
				const product = await ctx.call<any, any>("catalog.getProduct", { id: productId, includeInactive: true });
				if (product.status !== "active") throw conflict("PRODUCT_INACTIVE", "This product is not for sale", { productId });
				if (ctx.params.variantId) throw notFound("Variant", ctx.params.variantId);
				const cart = await this.activeCart(this.customerId(ctx));
				this.editable(cart);
				const current = await this.items(cart.id);
				const existing = current.find(i => i.sku === product.sku);
				const others = await this.products(ctx, current.filter(i => i !== existing).map(i => i.product_id));
				if (others.some(p => p.price.currency !== product.price.currency)) {
					throw conflict("CURRENCY_MISMATCH", `This cart is in ${others[0]!.price.currency}; the product is priced in ${product.price.currency}`);
				}
				// Inventory could not be asked: a retryable 503, never a false OUT_OF_STOCK.
				if (product.stockKnown === false) throw stockUnknown(productId);
				const target = cappedQuantity(existing?.quantity ?? 0, requested, product.available);
				if (target <= 0 || target <= (existing?.quantity ?? 0)) {
					throw conflict("OUT_OF_STOCK", "Not enough stock for this product", { productId, available: product.available, inCart: existing?.quantity ?? 0 });
				}
				await this.transaction(async trx => {
					await this.lockedCart(cart.id, trx).then(c => this.editable(c));
					if (existing) await this.table("cart_items", trx).where({ id: existing.id }).update({ quantity: target });
					else await this.table("cart_items", trx).insert({ id: randomUUID(), cart_id: cart.id, product_id: productId, sku: product.sku, quantity: target });
					await this.table("carts", trx).where({ id: cart.id }).update({ updated_at: this.knex.fn.now() });
					await this.record(trx, "cart.item_added", cart.id, {
						cartId: cart.id, customerId: cart.customer_id, productId, sku: product.sku,
						quantity: target - (existing?.quantity ?? 0), newQuantity: target, price: product.price, capped: target < (existing?.quantity ?? 0) + requested
					}, ctx);
				});
				return this.view(ctx, cart);
			}
		},

		updateItem: {
			rest: "PATCH /api/cart/items/:itemId",
			params: Joi.object({ itemId: uuid.required(), quantity: quantity.required() }),
			async handler(ctx) {
				const cart = await this.activeCart(this.customerId(ctx));
				this.editable(cart);
				const item = (await this.items(cart.id)).find(i => i.id === ctx.params.itemId);
				if (!item) throw notFound("Cart item", ctx.params.itemId);
				const q: number = ctx.params.quantity;
				if (q > 0) {
					const stock = await ctx.call<any[], any>("inventory.getMany", { skus: [item.sku] }, { timeout: 2000 }).catch((err: unknown) => {
						throw isClientError(err) ? err : stockUnknown(item.product_id);
					});
					const available = stock[0]?.available ?? 0;
					if (q > available) throw conflict("OUT_OF_STOCK", `Only ${available} in stock`, { sku: item.sku, requested: q, available });
				}
				await this.transaction(async trx => {
					await this.lockedCart(cart.id, trx).then(c => this.editable(c));
					if (q === 0) {
						await this.table("cart_items", trx).where({ id: item.id }).delete();
						await this.record(trx, "cart.item_removed", cart.id, { cartId: cart.id, customerId: cart.customer_id, itemId: item.id, productId: item.product_id, sku: item.sku }, ctx);
					} else {
						await this.table("cart_items", trx).where({ id: item.id }).update({ quantity: q });
						await this.record(trx, "cart.item_quantity_changed", cart.id, {
							cartId: cart.id, customerId: cart.customer_id, itemId: item.id, productId: item.product_id, sku: item.sku, oldQuantity: item.quantity, newQuantity: q
						}, ctx);
					}
				});
				return this.view(ctx, cart);
			}
		},

		removeItem: {
			rest: "DELETE /api/cart/items/:itemId",
			params: Joi.object({ itemId: uuid.required() }),
			async handler(ctx) {
				const cart = await this.activeCart(this.customerId(ctx));
				this.editable(cart);
				await this.transaction(async trx => {
					await this.lockedCart(cart.id, trx).then(c => this.editable(c));
					const [item] = await this.table("cart_items", trx).where({ id: ctx.params.itemId, cart_id: cart.id }).delete().returning("*");
					if (!item) throw notFound("Cart item", ctx.params.itemId);
					await this.record(trx, "cart.item_removed", cart.id, { cartId: cart.id, customerId: cart.customer_id, itemId: item.id, productId: item.product_id, sku: item.sku }, ctx);
				});
				return this.view(ctx, cart);
			}
		},

		clear: {
			rest: "DELETE /api/cart",
			params: Joi.object({}),
			async handler(ctx) {
				const cart = await this.activeCart(this.customerId(ctx));
				this.editable(cart);
				await this.transaction(async trx => {
					await this.lockedCart(cart.id, trx).then(c => this.editable(c));
					const removed = await this.table("cart_items", trx).where({ cart_id: cart.id }).delete();
					if (removed > 0) await this.record(trx, "cart.cleared", cart.id, { cartId: cart.id, customerId: cart.customer_id }, ctx);
				});
				return this.view(ctx, cart);
			}
		},

		/** One cart by id, as `get` shows it (checkout follows a cart's changes through it). */
		getById: {
			params: Joi.object({ cartId: uuid.required() }),
			async handler(ctx) {
				const cart: CartRow | undefined = await this.table("carts").where({ id: ctx.params.cartId }).first();
				if (!cart) throw notFound("Cart", ctx.params.cartId);
				return this.view(ctx, cart);
			}
		},

		// --- Steps of the place-order saga -------------------------------------------------

		/** Locks the cart for one saga and answers its lines at current prices. Re-locking by the same saga is a no-op. */
		lock: {
			params: Joi.object({
				cartId: uuid.required(),
				sagaId: uuid.required(),
				/** The cart total the checkout showed: a cart changed since then is refused (409 CART_CHANGED), not ordered. */
				expectedTotal: Joi.object({ amount: Joi.number().integer().min(0).required(), currency: Joi.string().length(3).required() }),
				idempotencyKey: Joi.string().max(200)
			}),
			async handler(ctx) {
				const { cartId, sagaId, expectedTotal } = ctx.params;
				const cart = await this.transaction(async trx => {
					const c = await this.lockedCart(cartId, trx);
					if (c.status !== "active") throw conflict("CART_EMPTY", "This cart was already checked out");
					if (c.locked_by && c.locked_by !== sagaId) throw conflict("CART_LOCKED", "A checkout of this cart is already running");
					const count = await this.table("cart_items", trx).where({ cart_id: cartId }).count<{ n: string }[]>("* as n");
					if (Number(count[0]!.n) === 0) throw conflict("CART_EMPTY", "The cart is empty");
					if (!c.locked_by) await this.table("carts", trx).where({ id: cartId }).update({ locked_by: sagaId, locked_at: this.knex.fn.now() });
					return c;
				});
				const items = await this.items(cartId);
				const lines = priceLines(items, await this.products(ctx, items.map(i => i.product_id)));
				const inactive = lines.find(l => !l.active);
				if (inactive) throw conflict("PRODUCT_INACTIVE", `'${inactive.name}' is no longer for sale`, { productId: inactive.productId });
				const total = cartTotal(lines);
				if (expectedTotal && (expectedTotal.amount !== total.amount || expectedTotal.currency !== total.currency)) {
					throw conflict("CART_CHANGED", "The cart changed since the checkout was shown; review it and place again", { expectedTotal, total });
				}
				return {
					cartId,
					customerId: cart.customer_id,
					lines: lines.map(l => ({ productId: l.productId, sku: l.sku, name: l.name, categoryId: l.categoryId, quantity: l.quantity, unitPrice: l.unitPrice })),
					total
				};
			}
		},

		/** The compensation of `lock`: frees the cart if this saga holds it. */
		unlock: {
			params: Joi.object({ cartId: uuid.required(), sagaId: uuid.required(), idempotencyKey: Joi.string().max(200) }),
			async handler(ctx) {
				const n = await this.table("carts").where({ id: ctx.params.cartId, locked_by: ctx.params.sagaId }).update({ locked_by: null, locked_at: null });
				return { cartId: ctx.params.cartId, unlocked: n > 0 };
			}
		},

		/** Internal (checkout's reconciler): carts locked by a checkout for more than `olderThanMs`, with the saga holding them. */
		listLocked: {
			params: Joi.object({ olderThanMs: Joi.number().integer().min(0).required(), limit: Joi.number().integer().min(1).max(1000).default(200) }),
			async handler(ctx) {
				const rows = await this.table("carts")
					.whereNotNull("locked_by")
					.where("locked_at", "<", new Date(Date.now() - ctx.params.olderThanMs))
					.orderBy("locked_at")
					.limit(ctx.params.limit);
				return rows.map((c: CartRow) => ({ cartId: c.id, sagaId: c.locked_by!, customerId: c.customer_id, lockedAt: new Date(c.locked_at as any).toISOString() }));
			}
		},

		/** Empties the cart into the order: the cart is checked out and the customer's next cart is a new one. */
		checkout: {
			params: Joi.object({ cartId: uuid.required(), sagaId: uuid.required(), orderId: uuid.required(), idempotencyKey: Joi.string().max(200) }),
			async handler(ctx) {
				const { cartId, sagaId, orderId } = ctx.params;
				return this.transaction(async trx => {
					const c = await this.lockedCart(cartId, trx);
					if (c.status === "checked_out" && c.order_id === orderId) return { cartId, orderId };
					if (c.locked_by !== sagaId) throw conflict("INVALID_TRANSITION", "This cart is not locked by this checkout");
					const items = await this.table("cart_items", trx).where({ cart_id: cartId }).delete().returning("*");
					await this.table("carts", trx).where({ id: cartId }).update({ status: "checked_out", order_id: orderId, locked_by: null, updated_at: this.knex.fn.now() });
					await this.record(trx, "cart.checked_out", cartId, {
						cartId, customerId: c.customer_id, orderId,
						items: items.map((i: CartItemRow) => ({ productId: i.product_id, sku: i.sku, quantity: i.quantity }))
					}, ctx);
					return { cartId, orderId };
				});
			}
		}
	},

	methods: {
		customerId(ctx: Ctx): string {
			const user = ctx.meta.user;
			if (!user) throw unauthorized();
			return user.id;
		},

		editable(cart: CartRow) {
			if (cart.locked_by) throw conflict("CART_LOCKED", "The cart is locked while its checkout runs");
		},

		async activeCart(this: This, customerId: string, trx?: Knex.Transaction): Promise<CartRow> {
			const found = await this.table("carts", trx).where({ customer_id: customerId, status: "active" }).first();
			if (found) return found;
			const id = randomUUID();
			await this.table("carts", trx).insert({ id, customer_id: customerId }).onConflict(this.knex.raw("(customer_id) WHERE status = 'active'")).ignore();
			return this.table("carts", trx).where({ customer_id: customerId, status: "active" }).first();
		},

		async lockedCart(this: This, cartId: string, trx: Knex.Transaction): Promise<CartRow> {
			const c = await this.table("carts", trx).where({ id: cartId }).forUpdate().first();
			if (!c) throw notFound("Cart", cartId);
			return c;
		},

		async items(this: This, cartId: string, trx?: Knex.Transaction): Promise<CartItemRow[]> {
			return this.table("cart_items", trx).where({ cart_id: cartId }).orderBy("added_at").orderBy("id");
		},

		async products(this: This, ctx: Ctx, ids: string[]): Promise<ProductInfo[]> {
			if (ids.length === 0) return [];
			return ctx.call("catalog.getMany", { ids });
		},

		async view(this: This, ctx: Ctx, cart: CartRow) {
			const fresh: CartRow = await this.table("carts").where({ id: cart.id }).first();
			const items = await this.items(cart.id);
			const lines = priceLines(items, await this.products(ctx, items.map(i => i.product_id)));
			return {
				id: fresh.id,
				customerId: fresh.customer_id,
				status: fresh.status,
				locked: !!fresh.locked_by,
				items: lines,
				itemCount: lines.reduce((n, l) => n + l.quantity, 0),
				total: cartTotal(lines)
			};
		}
	}
});
