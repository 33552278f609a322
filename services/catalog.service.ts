/**
 * catalog — vendors, categories (a tree at most three deep, names unique among siblings) and
 * products with their lifecycle (draft → active ⇄ inactive, soft delete) and price in minor
 * units. A product without variants has one SKU, equal to its id; each variant has its own.
 * Inventory creates the stock of every SKU from `product.created`; the catalog keeps its own
 * copy of available stock per SKU from inventory's events, so a listing asks no other service.
 * Every change of a product is in its change log.
 */
import Joi from "joi";
import { randomUUID } from "node:crypto";
import { conflict, notFound, validationError } from "../contracts/errors";
import { page, pageSize } from "../contracts/paging";
import { CURRENCIES } from "../contracts/money";
import { CatalogCache, catalogCacheKeys, CatalogCacheMethods } from "../mixins/catalog-cache";
import { DbMixin, writeKey, type Trx } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { settings } from "../infra/settings";
import { Ctx, defineService, ServiceThis } from "../infra/service";
import { categoryTree, depthUnder, diffProduct, MAX_CATEGORY_DEPTH, productView, skusOf, VariantRow, withDescendants } from "./catalog/product";
import { uuid } from "../contracts/ids";

/** At least 0.01: a product is never given away by mistake. */
const price = Joi.object({
	amount: Joi.number().integer().min(1).max(100_000_000_00).required(),
	currency: Joi.string().valid(...CURRENCIES).required()
});
const productName = Joi.string().trim().min(1).max(200);
const description = Joi.string().max(5000).allow("");
const skuCode = Joi.string().trim().min(1).max(100).pattern(/^[A-Za-z0-9._-]+$/, "letters, digits, . _ -");
const variant = Joi.object({
	sku: skuCode.required(),
	name: Joi.string().trim().min(1).max(200).required(),
	attributes: Joi.object().pattern(Joi.string().max(50), Joi.string().max(200)).max(20).default({}),
	initialStock: Joi.number().integer().min(0).max(1_000_000_000)
});

interface Methods {
	isAdmin(ctx: Ctx): boolean;
	actor(ctx: Ctx): string | null;
	stockOf(skus: string[]): Promise<Map<string, number>>;
	variantsOf(ids: string[], trx?: Trx): Promise<Map<string, VariantRow[]>>;
	views(rows: any[], withStock: boolean): Promise<any[]>;
	mustExist(trx: Trx, table: "categories" | "vendors", id: string | null | undefined, what: string): Promise<void>;
	logChange(trx: Trx, productId: string, change: string, changedFields: Record<string, unknown>, ctx: Ctx): Promise<void>;
	setStatus(ctx: Ctx, id: string, status: "active" | "inactive"): Promise<any>;
	keepStock(payload: any): Promise<void>;
}

type This = ServiceThis<Methods, CatalogCacheMethods>;

export default defineService<Methods, CatalogCacheMethods>({
	name: "catalog",
	mixins: [DbMixin("catalog"), OutboxMixin(), CatalogCache()],

	actions: {
		// --- Vendors ---------------------------------------------------------------------------

		createVendor: {
			rest: "POST /api/vendors",
			params: Joi.object({
				name: Joi.string().trim().min(1).max(200).required(),
				email: Joi.string().trim().lowercase().max(320).email({ tlds: false }).required(),
				phone: Joi.string().trim().pattern(/^\+?[0-9 ()-]{6,30}$/, "phone number").allow(null)
			}),
			async handler(ctx) {
				const { name, email, phone } = ctx.params;
				return this.idempotent(writeKey(ctx, "catalog.createVendor", ctx.meta.user?.id ?? ""), "catalog.createVendor", async trx => {
					const id = randomUUID();
					const inserted = await this.table("vendors", trx).insert({ id, name, email, phone: phone ?? null }).onConflict(this.knex.raw("(lower(name))")).ignore().returning("*");
					if (inserted.length === 0) throw conflict("NAME_TAKEN", `A vendor named '${name}' exists already`, { name });
					await this.record(trx, "vendor.created", id, { vendorId: id, name, email, phone: phone ?? null, createdAt: inserted[0].created_at }, ctx);
					return vendorView(inserted[0]);
				});
			}
		},

		listVendors: {
			rest: "GET /api/vendors",
			params: Joi.object({ page, pageSize }),
			async handler(ctx) {
				const { page, pageSize } = ctx.params;
				const [{ n }] = await this.table("vendors").count<{ n: string }[]>("* as n");
				const rows = await this.table("vendors").orderBy("name").orderBy("id").limit(pageSize).offset((page - 1) * pageSize);
				return { rows: rows.map(vendorView), total: Number(n), page, pageSize };
			}
		},

		getVendor: {
			rest: "GET /api/vendors/:id",
			params: Joi.object({ id: uuid.required() }),
			async handler(ctx) {
				const row = await this.table("vendors").where({ id: ctx.params.id }).first();
				if (!row) throw notFound("Vendor", ctx.params.id);
				return vendorView(row);
			}
		},

		// --- Categories ------------------------------------------------------------------------

		createCategory: {
			rest: "POST /api/categories",
			params: Joi.object({ name: Joi.string().trim().min(1).max(100).required(), parentId: uuid.allow(null) }),
			async handler(ctx) {
				const { name, parentId } = ctx.params;
				return this.idempotent(writeKey(ctx, "catalog.createCategory", ctx.meta.user?.id ?? ""), "catalog.createCategory", async trx => {
					const parent = parentId ? await this.table("categories", trx).where({ id: parentId }).first() : null;
					if (parentId && !parent) throw notFound("Parent category", parentId);
					const depth = depthUnder(parent);
					if (depth > MAX_CATEGORY_DEPTH) throw conflict("CATEGORY_TOO_DEEP", `Categories nest at most ${MAX_CATEGORY_DEPTH} levels deep`, { parentId });
					// Siblings only: "Accessories" may exist under "Phones" and under "Laptops".
					const sibling = await this.table("categories", trx)
						.where(q => (parentId ? q.where({ parent_id: parentId }) : q.whereNull("parent_id")))
						.whereRaw("lower(name) = lower(?)", [name])
						.first();
					if (sibling) throw conflict("NAME_TAKEN", `A category named '${name}' exists already at this level (names are unique among siblings, regardless of case)`, { name, parentId: parentId ?? null });
					const id = randomUUID();
					const [row] = await this.table("categories", trx).insert({ id, name, parent_id: parentId ?? null, depth }).returning("*");
					await this.record(trx, "category.created", id, { categoryId: id, name, parentCategoryId: parentId ?? null, depth, createdAt: row.created_at }, ctx);
					return { id, name, parentId: parentId ?? null, depth };
				}).catch(err => {
					// Two admins creating the same sibling at once: the unique index decides.
					if (err?.code === "23505") throw conflict("NAME_TAKEN", `A category named '${name}' exists already at this level`, { name, parentId: parentId ?? null });
					throw err;
				});
			}
		},

		listCategories: {
			rest: "GET /api/categories",
			params: Joi.object({}),
			async handler() {
				return categoryTree(await this.table("categories").orderBy("name"));
			}
		},

		// --- Products --------------------------------------------------------------------------

		createProduct: {
			rest: "POST /api/products",
			params: Joi.object({
				name: productName.required(),
				description: description.default(""),
				price: price.required(),
				categoryId: uuid.required(),
				vendorId: uuid.allow(null),
				variants: Joi.array().items(variant).max(100).unique("sku", { ignoreUndefined: true }).default([]),
				initialStock: Joi.number().integer().min(0).max(1_000_000_000).default(0),
				lowStockThreshold: Joi.number().integer().min(0).max(1_000_000).default(5)
			}),
			async handler(ctx) {
				const p = ctx.params;
				return this.idempotent(writeKey(ctx, "catalog.createProduct", ctx.meta.user?.id ?? ""), "catalog.createProduct", async trx => {
					await this.mustExist(trx, "categories", p.categoryId, "Category");
					await this.mustExist(trx, "vendors", p.vendorId, "Vendor");
					const skus: string[] = p.variants.map((v: any) => v.sku);
					if (skus.length > 0) {
						const taken = [
							...(await this.table("variants", trx).whereIn("sku", skus).pluck("sku")),
							...(await this.table("products", trx).whereIn("sku", skus).pluck("sku"))
						];
						if (taken.length > 0) throw conflict("SKU_TAKEN", `SKU ${taken[0]} belongs to another product`, { sku: taken[0] });
					}
					const id = randomUUID();
					const [row] = await this.table("products", trx)
						.insert({ id, sku: id, name: p.name, description: p.description, price_amount: p.price.amount, price_currency: p.price.currency, category_id: p.categoryId, vendor_id: p.vendorId ?? null, status: "draft" })
						.returning("*");
					const variants: VariantRow[] = p.variants.map((v: any, position: number) => ({ id: randomUUID(), product_id: id, sku: v.sku, name: v.name, attributes: JSON.stringify(v.attributes), position }));
					if (variants.length > 0) await this.table("variants", trx).insert(variants);
					await this.logChange(trx, id, "created", { name: p.name, price: p.price, categoryId: p.categoryId, vendorId: p.vendorId ?? null }, ctx);
					await this.record(trx, "product.created", id, {
						productId: id, sku: id, name: p.name, description: p.description, price: p.price, categoryId: p.categoryId, vendorId: p.vendorId ?? null,
						variants: p.variants.map((v: any, i: number) => ({ variantId: variants[i]!.id, sku: v.sku, name: v.name, attributes: v.attributes, initialStock: v.initialStock ?? p.initialStock })),
						status: row.status, initialStock: p.initialStock, lowStockThreshold: p.lowStockThreshold, createdBy: ctx.meta.user?.id ?? null, createdAt: row.created_at
					}, ctx);
					return productView(row, undefined, variants.map(v => ({ ...v, attributes: JSON.parse(v.attributes as string) })));
				});
			}
		},

		/** PATCH: only the fields sent; `product.updated` names each changed field with its old and new value. */
		updateProduct: {
			rest: "PATCH /api/products/:id",
			params: Joi.object({
				id: uuid.required(),
				name: productName,
				description,
				price,
				categoryId: uuid,
				vendorId: uuid.allow(null)
			}),
			async handler(ctx) {
				const { id, ...patch } = ctx.params;
				if (Object.keys(patch).length === 0) throw validationError("Nothing to change", [{ field: "body", message: "send at least one of name, description, price, categoryId, vendorId" }]);
				const row = await this.transaction(async trx => {
					const current = await this.table("products", trx).where({ id }).whereNot({ status: "deleted" }).forUpdate().first();
					if (!current) throw notFound("Product", id);
					const { changedFields, columns } = diffProduct(current, patch);
					if (Object.keys(changedFields).length === 0) return current;
					if ("categoryId" in changedFields) await this.mustExist(trx, "categories", patch.categoryId, "Category");
					if ("vendorId" in changedFields) await this.mustExist(trx, "vendors", patch.vendorId, "Vendor");
					const [updated] = await this.table("products", trx).where({ id }).update({ ...columns, updated_at: this.knex.fn.now() }).returning("*");
					await this.logChange(trx, id, "updated", changedFields, ctx);
					const variants = (await this.variantsOf([id], trx)).get(id) ?? [];
					await this.record(trx, "product.updated", id, {
						productId: id, skus: skusOf(updated, variants), changedFields, price: { amount: Number(updated.price_amount), currency: updated.price_currency },
						status: updated.status, updatedBy: ctx.meta.user?.id ?? null, updatedAt: updated.updated_at
					}, ctx);
					return updated;
				});
				return (await this.views([row], true))[0];
			}
		},

		activateProduct: {
			rest: "POST /api/products/:id/activate",
			params: Joi.object({ id: uuid.required() }),
			handler(ctx) {
				return this.setStatus(ctx, ctx.params.id, "active");
			}
		},

		deactivateProduct: {
			rest: "POST /api/products/:id/deactivate",
			params: Joi.object({ id: uuid.required() }),
			handler(ctx) {
				return this.setStatus(ctx, ctx.params.id, "inactive");
			}
		},

		/** Soft delete: gone from listings and carts; orders keep the lines they copied; inventory keeps its history. */
		deleteProduct: {
			rest: "DELETE /api/products/:id",
			params: Joi.object({ id: uuid.required() }),
			async handler(ctx) {
				const { id } = ctx.params;
				return this.idempotent(writeKey(ctx, "catalog.deleteProduct", ctx.meta.user?.id ?? ""), "catalog.deleteProduct", async trx => {
					const current = await this.table("products", trx).where({ id }).whereNot({ status: "deleted" }).forUpdate().first();
					if (!current) throw notFound("Product", id);
					const [row] = await this.table("products", trx)
						.where({ id })
						.update({ status: "deleted", deleted_at: this.knex.fn.now(), deleted_by: ctx.meta.user?.id ?? null, updated_at: this.knex.fn.now() })
						.returning("*");
					await this.logChange(trx, id, "deleted", { status: { from: current.status, to: "deleted" } }, ctx);
					const variants = (await this.variantsOf([id], trx)).get(id) ?? [];
					await this.record(trx, "product.deleted", id, { productId: id, skus: skusOf(row, variants), previousStatus: current.status, deletedBy: ctx.meta.user?.id ?? null, deletedAt: row.deleted_at }, ctx);
					return { id, status: "deleted", deletedAt: row.deleted_at };
				});
			}
		},

		getProduct: {
			rest: "GET /api/products/:id",
			cache: { keys: catalogCacheKeys.getProduct, ttl: settings.catalogCacheTtlS },
			params: Joi.object({ id: uuid.required() }),
			async handler(ctx) {
				const row = await this.table("products").where({ id: ctx.params.id }).first();
				// Drafts, deactivated and deleted products exist only for admins; anyone else gets 404.
				if (!row || (row.status !== "active" && !this.isAdmin(ctx))) {
					throw notFound("Product", ctx.params.id);
				}
				return (await this.views([row], true))[0];
			}
		},

		/** Text search over name and description, a category with everything under it, a vendor; shoppers see active products only. */
		listProducts: {
			rest: "GET /api/products",
			cache: { keys: catalogCacheKeys.listProducts, ttl: settings.catalogCacheTtlS },
			params: Joi.object({ q: Joi.string().trim().max(200).allow(""), categoryId: uuid, vendorId: uuid, page, pageSize }),
			async handler(ctx) {
				const { q, categoryId, vendorId, page, pageSize } = ctx.params;
				const query = this.table("products").whereNot({ status: "deleted" });
				if (!this.isAdmin(ctx)) query.where({ status: "active" });
				if (categoryId) query.whereIn("category_id", withDescendants(await this.table("categories").select("id", "parent_id"), categoryId));
				if (vendorId) query.where({ vendor_id: vendorId });
				if (q) {
					const like = `%${q.replace(/[%_\\]/g, "\\$&")}%`;
					query.where(b => b.whereILike("name", like).orWhereILike("description", like));
				}
				const [{ n }] = await query.clone().count<{ n: string }[]>("* as n");
				const rows = await query.orderBy("created_at", "desc").orderBy("id").limit(pageSize).offset((page - 1) * pageSize);
				return { rows: await this.views(rows, true), total: Number(n), page, pageSize };
			}
		},

		/** A product's change log, newest first (admins). */
		productChanges: {
			rest: "GET /api/products/:id/changes",
			params: Joi.object({ id: uuid.required(), page, pageSize }),
			async handler(ctx) {
				const { id, page, pageSize } = ctx.params;
				if (!(await this.table("products").where({ id }).first())) throw notFound("Product", id);
				const [{ n }] = await this.table("product_changes").where({ product_id: id }).count<{ n: string }[]>("* as n");
				const rows = await this.table("product_changes").where({ product_id: id }).orderBy("id", "desc").limit(pageSize).offset((page - 1) * pageSize);
				return {
					rows: rows.map((r: any) => ({ id: Number(r.id), change: r.change, changedFields: r.changed_fields, actor: r.actor, at: r.at })),
					total: Number(n),
					page,
					pageSize
				};
			}
		},

		/** Products of any status (deleted too) by id, with variants and stock: carts and notifications use it. */
		getMany: {
			params: Joi.object({ ids: Joi.array().items(uuid).max(200).required(), withVendors: Joi.boolean().default(false) }),
			async handler(ctx) {
				if (ctx.params.ids.length === 0) return [];
				const views = await this.views(await this.table("products").whereIn("id", ctx.params.ids), true);
				if (!ctx.params.withVendors) return views;
				const vendorIds = [...new Set(views.map(v => v.vendorId).filter(Boolean))];
				const vendors = new Map((await this.table("vendors").whereIn("id", vendorIds)).map((r: any) => [r.id, vendorView(r)]));
				return views.map(v => ({ ...v, vendor: v.vendorId ? (vendors.get(v.vendorId) ?? null) : null }));
			}
		},

		/** The product a SKU belongs to (its own or a variant's), any status; null when none. */
		productOfSku: {
			params: Joi.object({ sku: Joi.string().trim().min(1).max(100).required() }),
			async handler(ctx) {
				const v = await this.table("variants").where({ sku: ctx.params.sku }).first();
				const row = await this.table("products").where(v ? { id: v.product_id } : { sku: ctx.params.sku }).first();
				return row ? (await this.views([row], false))[0] : null;
			}
		}
	},

	channels: {
		/** Available stock per SKU follows inventory: the newest version wins, whatever order events arrive in. */
		"inventory.created": {
			async handler(event) {
				await this.keepStock(event.payload);
			}
		},
		"inventory.updated": {
			async handler(event) {
				await this.keepStock(event.payload);
			}
		}
	},

	methods: {
		isAdmin(ctx: Ctx) {
			return ctx.meta.user?.role === "admin";
		},

		actor(ctx: Ctx) {
			const user = ctx.meta.user;
			return user ? `${user.role}:${user.id}` : null;
		},

		async keepStock(this: This, p: any) {
			if (typeof p?.sku !== "string" || !Number.isInteger(p?.available)) return;
			const version = Number.isInteger(p.version) ? p.version : 0;
			await this.knex.raw(
				`INSERT INTO ??.stock (sku, available, version) VALUES (?, ?, ?)
				 ON CONFLICT (sku) DO UPDATE SET available = excluded.available, version = excluded.version WHERE stock.version < excluded.version`,
				[this.schemaName, p.sku, p.available, version]
			);
			// The lists show this stock: their cached answers go (at most once per CATALOG_STOCK_CLEAN_MS).
			await this.stockChanged();
		},

		async stockOf(this: This, skus: string[]): Promise<Map<string, number>> {
			if (skus.length === 0) return new Map();
			const rows = await this.table("stock").whereIn("sku", skus);
			return new Map(rows.map((r: any) => [r.sku, r.available]));
		},

		async variantsOf(this: This, ids: string[], trx?: Trx): Promise<Map<string, VariantRow[]>> {
			const out = new Map<string, VariantRow[]>();
			if (ids.length === 0) return out;
			for (const v of await this.table("variants", trx).whereIn("product_id", ids).orderBy("position")) {
				out.set(v.product_id, [...(out.get(v.product_id) ?? []), v]);
			}
			return out;
		},

		async views(this: This, rows: any[], withStock: boolean) {
			const variants = await this.variantsOf(rows.map(r => r.id));
			const stock = withStock ? await this.stockOf(rows.flatMap(r => skusOf(r, variants.get(r.id) ?? []))) : undefined;
			return rows.map(r => productView(r, stock, variants.get(r.id) ?? []));
		},

		async mustExist(this: This, trx: Trx, table: "categories" | "vendors", id: string | null | undefined, what: string) {
			if (!id) return;
			if (!(await this.table(table, trx).where({ id }).first())) throw notFound(what, id);
		},

		async logChange(this: This, trx: Trx, productId: string, change: string, changedFields: Record<string, unknown>, ctx: Ctx) {
			await this.table("product_changes", trx).insert({ product_id: productId, change, changed_fields: JSON.stringify(changedFields), actor: this.actor(ctx) });
		},

		async setStatus(this: This, ctx: Ctx, id: string, status: "active" | "inactive") {
			const row = await this.transaction(async trx => {
				const current = await this.table("products", trx).where({ id }).whereNot({ status: "deleted" }).forUpdate().first();
				if (!current) throw notFound("Product", id);
				if (current.status === status) return current;
				const [updated] = await this.table("products", trx).where({ id }).update({ status, updated_at: this.knex.fn.now() }).returning("*");
				await this.logChange(trx, id, status === "active" ? "activated" : "deactivated", { status: { from: current.status, to: status } }, ctx);
				const variants = (await this.variantsOf([id], trx)).get(id) ?? [];
				const at = status === "active" ? "activatedAt" : "deactivatedAt";
				await this.record(trx, status === "active" ? "product.activated" : "product.deactivated", id, {
					productId: id, sku: updated.sku, skus: skusOf(updated, variants), status, previousStatus: current.status, [at]: updated.updated_at
				}, ctx);
				return updated;
			});
			return (await this.views([row], true))[0];
		}
	}
});

function vendorView(row: any) {
	return { id: row.id, name: row.name, email: row.email, phone: row.phone ?? null, createdAt: row.created_at };
}
