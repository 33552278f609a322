/**
 * catalog — categories (a tree at most three deep, names unique) and products with their
 * lifecycle (draft → active ⇄ inactive) and price in minor units. A product without variants
 * has one SKU, equal to its id; inventory creates its stock from `product.created`.
 */
import Joi from "joi";
import { randomUUID } from "node:crypto";
import { conflict, notFound } from "../contracts/errors";
import { page, pageSize } from "../contracts/paging";
import { moneySchema } from "../contracts/money";
import { DbMixin } from "../mixins/db.mixin";
import { OutboxMixin } from "../mixins/outbox.mixin";
import { Ctx, defineService, ServiceThis } from "../mixins/service";
import { categoryTree, depthUnder, MAX_CATEGORY_DEPTH, productView } from "./catalog/product";

const uuid = Joi.string().guid();

interface Methods {
	availability(ctx: Ctx, skus: string[]): Promise<Map<string, number> | null>;
	setStatus(ctx: Ctx, id: string, status: "active" | "inactive"): Promise<any>;
	isAdmin(ctx: Ctx): boolean;
}

type This = ServiceThis<Methods>;

export default defineService<Methods>({
	name: "catalog",
	mixins: [DbMixin("catalog"), OutboxMixin()],

	actions: {
		createCategory: {
			rest: "POST /api/categories",
			params: Joi.object({ name: Joi.string().trim().min(1).max(100).required(), parentId: uuid.allow(null) }),
			async handler(ctx) {
				const { name, parentId } = ctx.params;
				return this.transaction(async trx => {
					const parent = parentId ? await this.table("categories", trx).where({ id: parentId }).first() : null;
					if (parentId && !parent) throw notFound("Parent category", parentId);
					const depth = depthUnder(parent);
					if (depth > MAX_CATEGORY_DEPTH) throw conflict("CATEGORY_TOO_DEEP", `Categories nest at most ${MAX_CATEGORY_DEPTH} levels deep`, { parentId });
					const id = randomUUID();
					const inserted = await this.table("categories", trx).insert({ id, name, parent_id: parentId ?? null, depth }).onConflict(this.knex.raw("(lower(name))")).ignore().returning("*");
					if (inserted.length === 0) throw conflict("NAME_TAKEN", `A category named '${name}' exists already (names are unique regardless of case)`, { name });
					await this.record(trx, "category.created", id, { categoryId: id, name, parentCategoryId: parentId ?? null, depth, createdAt: inserted[0].created_at }, ctx);
					return { id, name, parentId: parentId ?? null, depth };
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

		createProduct: {
			rest: "POST /api/products",
			params: Joi.object({
				name: Joi.string().trim().min(1).max(200).required(),
				description: Joi.string().max(5000).allow("").default(""),
				price: moneySchema.required(),
				categoryId: uuid.required(),
				vendorId: uuid.allow(null),
				initialStock: Joi.number().integer().min(0).max(1_000_000_000).default(0),
				lowStockThreshold: Joi.number().integer().min(0).max(1_000_000).default(5)
			}),
			async handler(ctx) {
				const p = ctx.params;
				return this.transaction(async trx => {
					if (!(await this.table("categories", trx).where({ id: p.categoryId }).first())) throw notFound("Category", p.categoryId);
					const id = randomUUID();
					const [row] = await this.table("products", trx)
						.insert({ id, sku: id, name: p.name, description: p.description, price_amount: p.price.amount, price_currency: p.price.currency, category_id: p.categoryId, vendor_id: p.vendorId ?? null, status: "draft" })
						.returning("*");
					await this.record(trx, "product.created", id, {
						productId: id, sku: id, name: p.name, description: p.description, price: p.price, categoryId: p.categoryId, vendorId: p.vendorId ?? null,
						status: row.status, initialStock: p.initialStock, lowStockThreshold: p.lowStockThreshold, createdBy: ctx.meta.user?.id ?? null, createdAt: row.created_at
					}, ctx);
					return productView(row);
				});
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

		getProduct: {
			rest: "GET /api/products/:id",
			params: Joi.object({ id: uuid.required(), includeInactive: Joi.boolean().default(false) }),
			async handler(ctx) {
				const row = await this.table("products").where({ id: ctx.params.id }).whereNot({ status: "deleted" }).first();
				if (!row || (row.status !== "active" && !ctx.params.includeInactive && !this.isAdmin(ctx))) throw notFound("Product", ctx.params.id);
				const stock = await this.availability(ctx, [row.sku]);
				return productView(row, stock ? (stock.get(row.sku) ?? 0) : null);
			}
		},

		listProducts: {
			rest: "GET /api/products",
			params: Joi.object({ q: Joi.string().trim().max(200).allow(""), categoryId: uuid, vendorId: uuid, page, pageSize }),
			async handler(ctx) {
				const { q, categoryId, vendorId, page, pageSize } = ctx.params;
				const query = this.table("products").whereNot({ status: "deleted" });
				if (!this.isAdmin(ctx)) query.where({ status: "active" });
				if (categoryId) query.where({ category_id: categoryId });
				if (vendorId) query.where({ vendor_id: vendorId });
				if (q) query.where(b => b.whereILike("name", `%${q.replace(/[%_\\]/g, "\\$&")}%`).orWhereILike("description", `%${q.replace(/[%_\\]/g, "\\$&")}%`));
				const [{ n }] = await query.clone().count<{ n: string }[]>("* as n");
				const rows = await query.orderBy("created_at", "desc").orderBy("id").limit(pageSize).offset((page - 1) * pageSize);
				const stock = await this.availability(ctx, rows.map((r: any) => r.sku));
				return { rows: rows.map((r: any) => productView(r, stock ? (stock.get(r.sku) ?? 0) : null)), total: Number(n), page, pageSize };
			}
		},

		/** Products of any status by id: carts price their lines with it. */
		getMany: {
			params: Joi.object({ ids: Joi.array().items(uuid).max(200).required() }),
			async handler(ctx) {
				if (ctx.params.ids.length === 0) return [];
				return (await this.table("products").whereIn("id", ctx.params.ids)).map((r: any) => productView(r));
			}
		}
	},

	methods: {
		isAdmin(ctx: Ctx) {
			return ctx.meta.user?.role === "admin";
		},

		/** Available stock per SKU; null when inventory does not answer (the page still answers, its stock unknown). */
		async availability(this: This, ctx: Ctx, skus: string[]): Promise<Map<string, number> | null> {
			if (skus.length === 0) return new Map();
			try {
				const rows = await ctx.call<any[], any>("inventory.getMany", { skus }, { timeout: 2000 });
				return new Map(rows.map(r => [r.sku, r.available]));
			} catch (err) {
				this.logger.warn("Stock unavailable for a catalog answer", (err as Error).message);
				return null;
			}
		},

		async setStatus(this: This, ctx: Ctx, id: string, status: "active" | "inactive") {
			const row = await this.transaction(async trx => {
				const current = await this.table("products", trx).where({ id }).whereNot({ status: "deleted" }).forUpdate().first();
				if (!current) throw notFound("Product", id);
				if (current.status === status) return current;
				const [updated] = await this.table("products", trx).where({ id }).update({ status, updated_at: this.knex.fn.now() }).returning("*");
				const at = status === "active" ? "activatedAt" : "deactivatedAt";
				await this.record(trx, status === "active" ? "product.activated" : "product.deactivated", id, { productId: id, sku: updated.sku, status, previousStatus: current.status, [at]: updated.updated_at }, ctx);
				return updated;
			});
			return productView(row);
		}
	}
});
