/**
 * The catalog's read cache. Its reads (`cache: { keys }` on the actions) are kept by the
 * broker's cacher — Redis under the run's key prefix in the distributed system, memory in the
 * embedded one — so a warm product list costs one gateway → catalog call and no Postgres query.
 * Everything the cache holds is dropped
 *   - right after any catalog change answers (an action with a non-GET route): its writer, and
 *     anyone after it, reads the change at once;
 *   - when the catalog takes in inventory's stock events (`inventory.created` / `inventory.updated`:
 *     the stock shown in the lists changed) — the service calls `stockChanged()` then. Every
 *     checkout changes stock, so under load these would drop the cache dozens of times a second
 *     and only the few most read lists would ever be served from it (`npm run bench`, browsing
 *     while buying: at 5 checkouts/s, 87–94 % of list reads reached the catalog, ≈ 55 % with
 *     this). They drop it at most once every CATALOG_STOCK_CLEAN_MS (1 s): the first change of a
 *     quiet spell at once, every later one of the spell together at its end, so a list shows a
 *     stock level at most that much older than the catalog's;
 *   - at the latest after `CATALOG_CACHE_TTL_S` seconds, which also bounds a read that raced a
 *     change (started before the commit, stored after the clean).
 */
import type { ServiceSchema } from "moleculer";
import { settings } from "../infra/settings";

export const CATALOG_CACHE_PATTERN = "catalog.**";

/** The catalog's cached reads: what varies their answer. Admins see inactive products, so the role is part of the key. */
export const catalogCacheKeys = {
	listProducts: ["q", "categoryId", "vendorId", "page", "pageSize", "#user.role"],
	getProduct: ["id", "#user.role"]
};

export interface CatalogCacheMethods {
	cleanCatalogCache(): Promise<void>;
	/** A stock level shown in the lists changed: drops the cache now, or at the end of the current spell (see the header). */
	stockChanged(): Promise<void>;
}

export function CatalogCache(): Partial<ServiceSchema> {
	return {
		hooks: {
			after: {
				async "*"(this: any, ctx: any, res: unknown) {
					const rest: unknown = ctx.action?.rest;
					if (typeof rest === "string" && !rest.startsWith("GET ")) await this.cleanCatalogCache();
					return res;
				}
			}
		},
		async stopped(this: any) {
			// A spell still open: its changes are dropped now, not left to the cache's expiry.
			const spell = this.stockSpell;
			this.stockSpell = null;
			if (spell) {
				clearTimeout(spell.timer);
				if (spell.more) await this.cleanCatalogCache();
			}
		},
		methods: {
			async stockChanged(this: any) {
				const every = settings.catalogStockCleanMs;
				if (every === 0) return this.cleanCatalogCache();
				if (this.stockSpell) {
					this.stockSpell.more = true;
					return;
				}
				const spell = { more: false, timer: setTimeout(() => {
					if (this.stockSpell !== spell) return;
					this.stockSpell = null;
					// Changes came during the spell: they are dropped now, and a new spell begins.
					if (spell.more) void this.stockChanged();
				}, every) };
				this.stockSpell = spell;
				await this.cleanCatalogCache();
			},
			/**
			 * Drops every cached catalog answer, and tells the gateways to drop their copies
			 * (`catalog.cacheCleared`); a cacher that is down only costs the next reads a miss.
			 */
			async cleanCatalogCache(this: any) {
				await this.broker.cacher?.clean(CATALOG_CACHE_PATTERN).catch((err: Error) => this.logger.warn("Cleaning the catalog cache failed", err.message));
				this.broker.broadcast("catalog.cacheCleared", {});
			}
		}
	};
}
