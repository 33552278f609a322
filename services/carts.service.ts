/**
 * carts — customers' and guests' carts: add, change, remove, read with current prices and
 * totals; a guest cart joins the customer's cart after login (capped to stock).
 *
 * Who owns a cart: a logged-in customer has one active cart (no header needed); a guest makes
 * one with `createGuest` and sends its token (X-Guest-Token, carried in `meta.guestToken`); only
 * the token's hash is stored.
 *
 * Carts follow the catalog: a price change reaches every open cart (the cart shows a notice with
 * the old and new price); a deleted or deactivated product leaves every cart (a notice says why).
 * Carts nobody touched for CART_TTL_MS (default 7 days) expire (`cart.expired`) through a job
 * that runs every CART_EXPIRY_INTERVAL_MS on whichever replica takes the advisory lock first.
 *
 * Soft reservation (CART_HOLD_MS > 0; off by default): a cart's lines hold their stock in
 * inventory for that long after the cart last changed; removing lines, emptying, expiry and a
 * removed product give it back; at checkout inventory turns the hold into the order's reservation
 * in one transaction, and a checkout that fails holds the cart's lines again.
 *
 * The checkout saga locks the cart while it runs (changes answer 409 CART_LOCKED), and empties
 * it once the order is confirmed.
 */
import Joi from "joi";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { conflict, isClientError, notFound, temporary, unauthorized, validationError } from "../contracts/errors";
import type { EventEnvelope } from "../contracts/events";
import { DbMixin, writeKey, type Trx } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { Ctx, defineService, ServiceThis } from "../infra/service";
import { readSettings } from "../infra/settings";
import { cappedQuantity, CartItemRow, cartTotal, mergeLines, priceLines, ProductInfo, MAX_LINE_QUANTITY } from "./carts/cart";
import { uuid } from "../contracts/ids";

const quantity = Joi.number().integer().strict(false).min(0).max(MAX_LINE_QUANTITY);
const guestToken = Joi.string().pattern(/^[A-Za-z0-9_-]{20,100}$/, "guest token");

interface CartRow {
	id: string;
	customer_id: string | null;
	guest_token_hash: string | null;
	status: string;
	locked_by: string | null;
	locked_at?: Date | string | null;
	order_id: string | null;
	/** The line removed last (DELETE of an item), kept so the removal can be undone. */
	last_removed?: { itemId: string; productId: string; variantId: string | null; sku: string; quantity: number; removedAt: string } | null;
	updated_at: Date | string;
}

interface Product extends ProductInfo {
	sku: string;
	categoryId: string;
	variants: Array<{ id: string; sku: string; name: string }>;
}

interface Methods {
	cartOf(ctx: Ctx): Promise<CartRow>;
	activeCart(ctx: Ctx, customerId: string): Promise<CartRow>;
	guestCart(token: string): Promise<CartRow | null>;
	items(cartId: string, trx?: Trx): Promise<CartItemRow[]>;
	view(ctx: Ctx, cart: CartRow): Promise<any>;
	addLine(ctx: Ctx, line: { productId: string; variantId?: string | null; quantity: number }, action: string, also?: (trx: Trx, cart: CartRow) => Promise<unknown>): Promise<CartRow>;
	products(ctx: Ctx, ids: string[]): Promise<Product[]>;
	availableOf(ctx: Ctx, skus: string[], cartId?: string): Promise<Map<string, number>>;
	syncHold(ctx: Ctx | null, cartId: string, lines: Array<{ sku: string; quantity: number }> | null, strict: boolean): Promise<void>;
	lockedCart(cartId: string, trx: Trx): Promise<CartRow>;
	editable(cart: CartRow): void;
	touch(cartId: string, trx: Trx): Promise<void>;
	removeProduct(event: EventEnvelope, why: string): Promise<void>;
	expireInactive(): Promise<number>;
}

interface Vars {
	expiry: { timer: NodeJS.Timeout | null; ttlMs: number; intervalMs: number; running: boolean };
	holdMs: number;
}

type This = ServiceThis<Methods, Vars>;

const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");

export default defineService<Methods, Vars>({
	name: "carts",
	mixins: [DbMixin("carts"), OutboxMixin()],

	actions: {
		/** A new guest cart: answers its id and the token that reaches it (shown once). */
		createGuest: {
			rest: "POST /api/carts",
			params: Joi.object({}),
			async handler(ctx) {
				const token = randomBytes(24).toString("base64url");
				const id = randomUUID();
				await this.transaction(async trx => {
					await this.table("carts", trx).insert({ id, customer_id: null, guest_token_hash: hashToken(token) });
					await this.record(trx, "cart.created", id, { cartId: id, customerId: null, guest: true }, ctx);
				});
				return { cartId: id, guestToken: token };
			}
		},

		get: {
			rest: "GET /api/cart",
			params: Joi.object({}),
			async handler(ctx) {
				return this.view(ctx, await this.cartOf(ctx));
			}
		},

		addItem: {
			rest: "POST /api/cart/items",
			params: Joi.object({ productId: uuid.required(), variantId: uuid, quantity: quantity.min(1).required() }),
			async handler(ctx) {
				// Handed over again after its replica died (db.mixin's applyOnce): it adds once.
				if (await this.requestApplied(ctx.id)) return this.view(ctx, await this.cartOf(ctx));
				return this.view(ctx, await this.addLine(ctx, ctx.params, "carts.addItem"));
			}
		},

		updateItem: {
			rest: "PATCH /api/cart/items/:itemId",
			params: Joi.object({ itemId: uuid.required(), quantity: quantity.required() }),
			async handler(ctx) {
				if (await this.requestApplied(ctx.id)) return this.view(ctx, await this.cartOf(ctx)); // handed over again: see addItem
				const cart = await this.cartOf(ctx);
				this.editable(cart);
				const item = (await this.items(cart.id)).find(i => i.id === ctx.params.itemId);
				if (!item) throw notFound("Cart item", ctx.params.itemId);
				const q: number = ctx.params.quantity;
				if (q > 0) {
					const available = (await this.availableOf(ctx, [item.sku], cart.id)).get(item.sku) ?? 0;
					if (q > available) throw conflict("OUT_OF_STOCK", `Only ${available} in stock`, { sku: item.sku, requested: q, available });
				}
				const others = (await this.items(cart.id)).filter(i => i.id !== item.id).map(i => ({ sku: i.sku, quantity: i.quantity }));
				await this.syncHold(ctx, cart.id, q > 0 ? [...others, { sku: item.sku, quantity: q }] : others, q > 0);
				await this.applyOnce(ctx.id, "carts.updateItem", async trx => {
					await this.lockedCart(cart.id, trx).then(c => this.editable(c));
					if (q === 0) {
						await this.table("cart_items", trx).where({ id: item.id }).delete();
						await this.record(trx, "cart.item_removed", cart.id, { cartId: cart.id, customerId: cart.customer_id, itemId: item.id, productId: item.product_id, variantId: item.variant_id, sku: item.sku, reason: "customer", removedAt: new Date().toISOString() }, ctx);
					} else {
						await this.table("cart_items", trx).where({ id: item.id }).update({ quantity: q });
						await this.record(trx, "cart.item_quantity_changed", cart.id, {
							cartId: cart.id, customerId: cart.customer_id, itemId: item.id, cartItemId: item.id, productId: item.product_id, sku: item.sku, oldQuantity: item.quantity, newQuantity: q, updatedAt: new Date().toISOString()
						}, ctx);
					}
					await this.touch(cart.id, trx);
				});
				return this.view(ctx, cart);
			}
		},

		removeItem: {
			rest: "DELETE /api/cart/items/:itemId",
			params: Joi.object({ itemId: uuid.required() }),
			async handler(ctx) {
				const cart = await this.cartOf(ctx);
				// Handed over again after its replica died, a removal answers the cart without the line, not
				// 404 (and gives back the hold, in case the replica died before it did).
				if (await this.requestApplied(ctx.id)) {
					await this.syncHold(ctx, cart.id, null, false);
					return this.view(ctx, cart);
				}
				this.editable(cart);
				await this.applyOnce(ctx.id, "carts.removeItem", async trx => {
					await this.lockedCart(cart.id, trx).then(c => this.editable(c));
					const [item] = await this.table("cart_items", trx).where({ id: ctx.params.itemId, cart_id: cart.id }).delete().returning("*");
					if (!item) throw notFound("Cart item", ctx.params.itemId);
					const removedAt = new Date().toISOString();
					await this.touch(cart.id, trx);
					await this.table("carts", trx).where({ id: cart.id }).update({
						last_removed: JSON.stringify({ itemId: item.id, productId: item.product_id, variantId: item.variant_id, sku: item.sku, quantity: item.quantity, removedAt })
					});
					await this.record(trx, "cart.item_removed", cart.id, { cartId: cart.id, customerId: cart.customer_id, itemId: item.id, productId: item.product_id, variantId: item.variant_id, sku: item.sku, reason: "customer", removedAt }, ctx);
				});
				await this.syncHold(ctx, cart.id, null, false);
				return this.view(ctx, cart);
			}
		},

		/**
		 * Undo of the last removal: the line comes back as it was, as an add would bring it (capped
		 * to the stock available now, refused if the product is no longer for sale). Only the line
		 * removed last can come back, once.
		 */
		restoreItem: {
			rest: "POST /api/cart/items/:itemId/restore",
			params: Joi.object({ itemId: uuid.required() }),
			async handler(ctx) {
				if (await this.requestApplied(ctx.id)) return this.view(ctx, await this.cartOf(ctx)); // handed over again: see addItem
				const cart = await this.cartOf(ctx);
				this.editable(cart);
				const last = cart.last_removed;
				if (!last || last.itemId !== ctx.params.itemId) throw notFound("Removed cart item", ctx.params.itemId);
				// The line comes back and the undo is spent in one transaction.
				await this.addLine(ctx, { productId: last.productId, variantId: last.variantId, quantity: last.quantity }, "carts.restoreItem", trx =>
					this.table("carts", trx).where({ id: cart.id }).whereRaw("last_removed->>'itemId' = ?", [last.itemId]).update({ last_removed: null })
				);
				return this.view(ctx, cart);
			}
		},

		clear: {
			rest: "DELETE /api/cart",
			params: Joi.object({}),
			async handler(ctx) {
				const cart = await this.cartOf(ctx);
				this.editable(cart);
				await this.transaction(async trx => {
					await this.lockedCart(cart.id, trx).then(c => this.editable(c));
					const removed = await this.table("cart_items", trx).where({ cart_id: cart.id }).delete();
					await this.touch(cart.id, trx);
					if (removed > 0) await this.record(trx, "cart.cleared", cart.id, { cartId: cart.id, customerId: cart.customer_id, reason: "customer", clearedAt: new Date().toISOString() }, ctx);
				});
				await this.syncHold(ctx, cart.id, [], false);
				return this.view(ctx, cart);
			}
		},

		/** The caller's active cart (the customer's, or the guest cart its token names) as `get` shows it, or null: creates nothing. */
		peek: {
			params: Joi.object({}),
			async handler(ctx) {
				let found: CartRow | null = null;
				if (ctx.meta.user) found = (await this.table("carts").where({ customer_id: ctx.meta.user.id, status: "active" }).first()) ?? null;
				else if (typeof ctx.meta.guestToken === "string" && ctx.meta.guestToken.length > 0) found = await this.guestCart(ctx.meta.guestToken);
				else throw unauthorized("Log in, or send the X-Guest-Token of a guest cart");
				return found ? this.view(ctx, found) : null;
			}
		},

		/**
		 * After login: the guest cart's lines join the customer's cart, each capped to the available
		 * stock; the guest cart ends. A repeat with the same Idempotency-Key (or RabbitMQ's copy of a
		 * request whose replica died after the merge) answers the customer's cart as it is now with
		 * the first merge's lines, not 404 for the guest cart that merge ended.
		 */
		merge: {
			rest: "POST /api/cart/merge",
			params: Joi.object({ guestToken: guestToken.required(), idempotencyKey: Joi.string().max(200) }),
			async handler(ctx) {
				const user = ctx.meta.user;
				if (!user) throw unauthorized();
				const key = writeKey(ctx, "carts.merge", `${user.id}:${hashToken(ctx.params.guestToken)}`);
				const earlier = await this.storedAnswer(key, "carts.merge");
				if (earlier.found) {
					const cart = await this.activeCart(ctx, user.id);
					await this.syncHold(ctx, cart.id, null, false); // the first may have died before this
					return { ...(await this.view(ctx, cart)), merged: earlier.result };
				}
				const guest = await this.guestCart(ctx.params.guestToken);
				if (!guest) throw notFound("Guest cart");
				const cart = await this.activeCart(ctx, user.id);
				this.editable(cart);
				this.editable(guest);
				const guestItems = await this.items(guest.id);
				const products = new Map((await this.products(ctx, [...new Set(guestItems.map(i => i.product_id))])).map(p => [p.id, p]));
				const forSale = guestItems.filter(i => products.get(i.product_id)?.status === "active");
				await this.syncHold(ctx, guest.id, [], false); // what the guest cart held is the customer's to take now
				const available = await this.availableOf(ctx, forSale.map(i => i.sku), cart.id);
				const merged = await this.idempotent(key, "carts.merge", async trx => {
					// Both carts in id order: two merges never wait on each other crosswise.
					for (const id of [cart.id, guest.id].sort()) this.editable(await this.lockedCart(id, trx));
					const again = await this.table("carts", trx).where({ id: guest.id }).first();
					if (again.status !== "active") throw notFound("Guest cart");
					const lines = mergeLines(await this.items(cart.id, trx), forSale, available);
					for (const l of lines) {
						const p = products.get(l.productId)!;
						const price = { unit_amount: p.price.amount, currency: p.price.currency, category_id: p.categoryId };
						if (l.before > 0) await this.table("cart_items", trx).where({ cart_id: cart.id, sku: l.sku }).update({ quantity: l.quantity, ...price });
						else if (l.quantity > 0) await this.table("cart_items", trx).insert({ id: randomUUID(), cart_id: cart.id, product_id: l.productId, sku: l.sku, variant_id: l.variantId, quantity: l.quantity, ...price });
					}
					await this.table("cart_items", trx).where({ cart_id: guest.id }).delete();
					await this.table("carts", trx).where({ id: guest.id }).update({ status: "merged", ended_at: this.knex.fn.now(), updated_at: this.knex.fn.now() });
					await this.touch(cart.id, trx);
					const mergedItems = lines.map(l => ({ productId: l.productId, variantId: l.variantId, sku: l.sku, requested: l.requested, quantity: l.quantity, added: l.quantity - l.before, capped: l.capped }));
					await this.record(trx, "cart.merged", cart.id, { cartId: cart.id, guestCartId: guest.id, customerId: user.id, mergedItems, mergedAt: new Date().toISOString() }, ctx);
					return mergedItems;
				});
				await this.syncHold(ctx, cart.id, null, false);
				return { ...(await this.view(ctx, cart)), merged };
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
				// The cart keeps its hold: inventory.reserve turns it into the order's reservation in one transaction.
				return {
					cartId,
					customerId: cart.customer_id,
					lines: lines.map(l => ({ productId: l.productId, variantId: l.variantId, categoryId: l.categoryId, sku: l.sku, name: l.name, quantity: l.quantity, unitPrice: l.unitPrice })),
					total
				};
			}
		},

		/** The compensation of `lock`: frees the cart if this saga holds it. */
		unlock: {
			params: Joi.object({ cartId: uuid.required(), sagaId: uuid.required(), idempotencyKey: Joi.string().max(200) }),
			async handler(ctx) {
				const n = await this.table("carts").where({ id: ctx.params.cartId, locked_by: ctx.params.sagaId }).update({ locked_by: null, locked_at: null });
				// The failed order gave back what it reserved, the cart's hold with it: the cart holds its lines again.
				if (n > 0) await this.syncHold(ctx, ctx.params.cartId, null, false);
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
					await this.table("carts", trx).where({ id: cartId }).update({ status: "checked_out", order_id: orderId, locked_by: null, ended_at: this.knex.fn.now(), updated_at: this.knex.fn.now() });
					await this.record(trx, "cart.checked_out", cartId, {
						cartId, customerId: c.customer_id, orderId,
						items: items.map((i: CartItemRow) => ({ productId: i.product_id, variantId: i.variant_id, sku: i.sku, quantity: i.quantity }))
					}, ctx);
					return { cartId, orderId };
				});
			}
		},

		/** Expires carts nobody touched for the configured time (the job calls it; operators may too). */
		expireInactive: {
			visibility: "public",
			params: Joi.object({}),
			async handler() {
				return { expired: await this.expireInactive() };
			}
		}
	},

	channels: {
		/** A price change reaches every open cart holding the product, and the cart says so. */
		"product.updated": {
			async handler(event) {
				const p = event.payload as any;
				const change = p?.changedFields?.price;
				if (typeof p?.productId !== "string" || !change?.to || !Number.isInteger(change.to.amount)) return;
				await this.handleOnce(event, "carts.product.updated", async trx => {
					const items = await this.table("cart_items as i", trx)
						.join(this.knex.raw("?? as c", [`${this.schemaName}.carts`]), "c.id", "i.cart_id")
						.where({ "i.product_id": p.productId, "c.status": "active" })
						.select("i.id", "i.cart_id", "i.unit_amount", "i.currency");
					for (const item of items) {
						await this.table("cart_items", trx).where({ id: item.id }).update({ unit_amount: change.to.amount, currency: change.to.currency });
						await this.table("cart_notices", trx).insert({
							cart_id: item.cart_id, kind: "price_changed", product_id: p.productId,
							message: `The price of a product in your cart changed from ${fmt(change.from)} to ${fmt(change.to)}`,
							data: JSON.stringify({ productId: p.productId, from: change.from, to: change.to })
						});
					}
				});
			}
		},
		"product.deleted": {
			async handler(event) {
				await this.removeProduct(event, "The product was removed from the shop");
			}
		},
		"product.deactivated": {
			async handler(event) {
				await this.removeProduct(event, "The product is no longer for sale");
			}
		}
	},

	methods: {
		/** The cart a call is about: the customer's own, or the guest cart its token names. */
		async cartOf(this: This, ctx: Ctx): Promise<CartRow> {
			if (ctx.meta.user) return this.activeCart(ctx, ctx.meta.user.id);
			const token = ctx.meta.guestToken;
			if (typeof token === "string" && token.length > 0) {
				const cart = await this.guestCart(token);
				if (!cart) throw notFound("Guest cart");
				return cart;
			}
			throw unauthorized("Log in, or send the X-Guest-Token of a guest cart");
		},

		async guestCart(this: This, token: string): Promise<CartRow | null> {
			if (guestToken.validate(token).error) return null;
			return (await this.table("carts").where({ guest_token_hash: hashToken(token), status: "active" }).first()) ?? null;
		},

		editable(cart: CartRow) {
			if (cart.locked_by) throw conflict("CART_LOCKED", "The cart is locked while its checkout runs");
		},

		async touch(this: This, cartId: string, trx: Trx) {
			await this.table("carts", trx).where({ id: cartId }).update({ updated_at: this.knex.fn.now() });
		},

		async activeCart(this: This, ctx: Ctx, customerId: string): Promise<CartRow> {
			const found = await this.table("carts").where({ customer_id: customerId, status: "active" }).first();
			if (found) return found;
			await this.transaction(async trx => {
				const id = randomUUID();
				const inserted = await this.table("carts", trx).insert({ id, customer_id: customerId }).onConflict(this.knex.raw("(customer_id) WHERE status = 'active'")).ignore().returning("id");
				if (inserted.length > 0) await this.record(trx, "cart.created", id, { cartId: id, customerId, guest: false }, ctx);
			});
			return this.table("carts").where({ customer_id: customerId, status: "active" }).first();
		},

		async lockedCart(this: This, cartId: string, trx: Trx): Promise<CartRow> {
			const c = await this.table("carts", trx).where({ id: cartId }).forUpdate().first();
			if (!c) throw notFound("Cart", cartId);
			return c;
		},

		async items(this: This, cartId: string, trx?: Trx): Promise<CartItemRow[]> {
			return this.table("cart_items", trx).where({ cart_id: cartId }).orderBy("added_at").orderBy("id");
		},

		async products(this: This, ctx: Ctx, ids: string[]): Promise<Product[]> {
			if (ids.length === 0) return [];
			return ctx.call("catalog.getMany", { ids: [...new Set(ids)] });
		},

		/** Available stock per SKU, asked of inventory itself (the catalog's copy may lag a moment). */
		async availableOf(this: This, ctx: Ctx, skus: string[], cartId?: string): Promise<Map<string, number>> {
			if (skus.length === 0) return new Map();
			// Inventory unreachable: a retryable 503, never a false OUT_OF_STOCK.
			const rows = await ctx
				.call<any[], any>("inventory.getMany", { skus: [...new Set(skus)], ...(cartId && this.holdMs > 0 ? { cartId } : {}) }, { timeout: 2000 })
				.catch((err: unknown) => {
					throw isClientError(err) ? err : temporary("The stock cannot be checked right now; try again in a moment", { skus });
				});
			return new Map(rows.map(r => [r.sku, r.sellable === false ? 0 : r.available]));
		},

		/**
		 * Adds `line` to the caller's cart (capped to the stock available), in one transaction with
		 * `also`, once per request (`action` names it in the record of the request).
		 */
		async addLine(this: This, ctx: Ctx, line: { productId: string; variantId?: string | null; quantity: number }, action: string, also?: (trx: Trx, cart: CartRow) => Promise<unknown>) {
			const { productId, variantId, quantity: requested } = line;
			const [product] = await this.products(ctx, [productId]);
			if (!product || product.status === "deleted") throw notFound("Product", productId);
			if (product.status !== "active") throw conflict("PRODUCT_INACTIVE", "This product is not for sale", { productId });
			let sku = product.sku;
			if (product.variants.length > 0) {
				if (!variantId) throw validationError("Choose a variant of this product", [{ field: "variantId", message: `"variantId" is required: this product comes in ${product.variants.map(v => v.name).join(", ")}`, type: "any.required" }]);
				const v = product.variants.find(x => x.id === variantId);
				if (!v) throw notFound("Variant", variantId);
				sku = v.sku;
			} else if (variantId) {
				throw notFound("Variant", variantId);
			}
			const cart = await this.cartOf(ctx);
			this.editable(cart);
			const current = await this.items(cart.id);
			const existing = current.find(i => i.sku === sku);
			const others = await this.products(ctx, current.filter(i => i !== existing).map(i => i.product_id));
			if (others.some(p => p.price.currency !== product.price.currency)) {
				throw conflict("CURRENCY_MISMATCH", `This cart is in ${others[0]!.price.currency}; the product is priced in ${product.price.currency}`);
			}
			const available = (await this.availableOf(ctx, [sku], cart.id)).get(sku) ?? 0;
			const target = cappedQuantity(existing?.quantity ?? 0, requested, available);
			if (target <= 0 || target <= (existing?.quantity ?? 0)) {
				throw conflict("OUT_OF_STOCK", "Not enough stock for this product", { productId, sku, available, inCart: existing?.quantity ?? 0 });
			}
			await this.syncHold(ctx, cart.id, [...current.filter(i => i !== existing).map(i => ({ sku: i.sku, quantity: i.quantity })), { sku, quantity: target }], true);
			await this.applyOnce(ctx.id, action, async trx => {
				await this.lockedCart(cart.id, trx).then(c => this.editable(c));
				const price = { unit_amount: product.price.amount, currency: product.price.currency, category_id: product.categoryId };
				if (existing) await this.table("cart_items", trx).where({ id: existing.id }).update({ quantity: target, ...price });
				else await this.table("cart_items", trx).insert({ id: randomUUID(), cart_id: cart.id, product_id: productId, sku, variant_id: variantId ?? null, quantity: target, ...price });
				await this.touch(cart.id, trx);
				await this.record(trx, "cart.item_added", cart.id, {
					cartId: cart.id, customerId: cart.customer_id, productId, variantId: variantId ?? null, sku,
					quantity: target - (existing?.quantity ?? 0), newQuantity: target, unitPrice: product.price, price: product.price,
					capped: target < (existing?.quantity ?? 0) + requested, addedAt: new Date().toISOString()
				}, ctx);
				await also?.(trx, cart);
			});
			return cart;
		},

		async view(this: This, ctx: Ctx, cart: CartRow) {
			const fresh: CartRow = await this.table("carts").where({ id: cart.id }).first();
			const items = await this.items(cart.id);
			const lines = priceLines(items, await this.products(ctx, items.map(i => i.product_id)));
			const notices = await this.table("cart_notices").where({ cart_id: cart.id }).orderBy("id", "desc").limit(20);
			return {
				id: fresh.id,
				customerId: fresh.customer_id,
				guest: !!fresh.guest_token_hash,
				status: fresh.status,
				locked: !!fresh.locked_by,
				items: lines,
				itemCount: lines.reduce((n, l) => n + l.quantity, 0),
				total: cartTotal(lines),
				notices: notices.map((n: any) => ({ kind: n.kind, productId: n.product_id, message: n.message, ...(typeof n.data === "string" ? JSON.parse(n.data) : n.data), at: n.created_at })),
				// What DELETE of a line removed last: POST /api/cart/items/:itemId/restore brings it back.
				lastRemoved: fresh.last_removed ?? null,
				updatedAt: fresh.updated_at
			};
		},

		/**
		 * With soft reservation on, makes the cart's hold match `lines` (null: the cart's lines as
		 * they are now). Strict: a refusal (OUT_OF_STOCK) is the caller's; else a failure is only
		 * logged (an unneeded hold expires by itself).
		 */
		async syncHold(this: This, ctx: Ctx | null, cartId: string, lines: Array<{ sku: string; quantity: number }> | null, strict: boolean) {
			if (this.holdMs <= 0) return;
			const wanted = lines ?? (await this.items(cartId)).map(i => ({ sku: i.sku, quantity: i.quantity }));
			const params = { cartId, lines: wanted, ttlMs: this.holdMs };
			try {
				await (ctx ? ctx.call("inventory.hold", params) : this.broker.call("inventory.hold", params));
			} catch (err: any) {
				if (strict) throw err;
				this.logger.warn(`Cart ${cartId}: its stock hold could not be updated (${err?.message}); it expires by itself`);
			}
		},

		/** A deleted or deactivated product leaves every open cart; each cart keeps a notice of why. */
		async removeProduct(this: This, event: EventEnvelope, why: string) {
			const productId = (event.payload as any)?.productId;
			if (typeof productId !== "string") return;
			const touched = new Set<string>();
			await this.handleOnce(event, `carts.${event.event_name}`, async trx => {
				const items = await this.table("cart_items as i", trx)
					.join(this.knex.raw("?? as c", [`${this.schemaName}.carts`]), "c.id", "i.cart_id")
					.where({ "i.product_id": productId, "c.status": "active" })
					.select("i.*", "c.customer_id");
				for (const item of items) {
					touched.add(item.cart_id);
					await this.table("cart_items", trx).where({ id: item.id }).delete();
					await this.table("cart_notices", trx).insert({ cart_id: item.cart_id, kind: "item_removed", product_id: productId, message: why, data: JSON.stringify({ productId, sku: item.sku, quantity: item.quantity, reason: event.event_name }) });
					await this.record(trx, "cart.item_removed", item.cart_id, {
						cartId: item.cart_id, customerId: item.customer_id, itemId: item.id, productId, variantId: item.variant_id, sku: item.sku, reason: event.event_name, removedAt: new Date().toISOString()
					}, event);
				}
			});
			for (const cartId of touched) await this.syncHold(null, cartId, null, false);
		},

		/** One replica at a time (a transaction-scoped advisory lock): carts with lines, untouched for the TTL, not in checkout. */
		async expireInactive(this: This): Promise<number> {
			return this.transaction(async trx => {
				const lock = await trx.raw("SELECT pg_try_advisory_xact_lock(hashtextextended(?, 0)) AS ok", [`${this.schemaName}.expire-carts`]);
				if (!(lock.rows ?? lock)[0]?.ok) return [] as string[];
				const cutoff = new Date(Date.now() - this.expiry.ttlMs);
				const carts: CartRow[] = await this.table("carts", trx)
					.where({ status: "active" })
					.whereNull("locked_by")
					.where("updated_at", "<", cutoff)
					.whereExists(this.knex.select(1).from(`${this.schemaName}.cart_items`).whereRaw("cart_items.cart_id = carts.id"))
					.orderBy("updated_at")
					.limit(500)
					.forUpdate()
					.skipLocked();
				for (const c of carts) {
					const items = await this.table("cart_items", trx).where({ cart_id: c.id }).delete().returning("*");
					await this.table("carts", trx).where({ id: c.id }).update({ status: "expired", ended_at: this.knex.fn.now() });
					await this.record(trx, "cart.expired", c.id, {
						cartId: c.id, customerId: c.customer_id, lastActivityDate: new Date(c.updated_at).toISOString(), expiredAt: new Date().toISOString(),
						items: items.map((i: CartItemRow) => ({ productId: i.product_id, sku: i.sku, quantity: i.quantity }))
					}, null);
				}
				return carts.map(c => c.id);
			}).then(async ids => {
				for (const id of ids) await this.syncHold(null, id, [], false);
				return ids.length;
			});
		}
	},

	created() {
		// Read when the service is made (not at import): a test may set its own times.
		const s = readSettings();
		this.expiry = {
			timer: null,
			running: false,
			ttlMs: s.cartTtlMs,
			intervalMs: s.cartExpiryIntervalMs
		};
		this.holdMs = s.cartHoldMs;
	},

	async started() {
		const tick = () => {
			if (this.expiry.running) return;
			this.expiry.running = true;
			this.schemaReady
				.then(() => this.expireInactive())
				.catch(err => this.logger.warn(`Cart expiry failed: ${err.message}`))
				.finally(() => (this.expiry.running = false));
		};
		if (this.expiry.intervalMs > 0) this.expiry.timer = setInterval(tick, this.expiry.intervalMs);
	},

	async stopped() {
		if (this.expiry.timer) clearInterval(this.expiry.timer);
		while (this.expiry.running) await new Promise(r => setTimeout(r, 10));
	}
});

function fmt(m: { amount: number; currency: string } | undefined) {
	return m ? `${(m.amount / 100).toFixed(2)} ${m.currency}` : "?";
}
