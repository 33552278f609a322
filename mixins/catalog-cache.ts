/**
 * The catalog's read cache. Its reads (`cache: { keys }` on the actions) are kept by the
 * broker's cacher — Redis under the run's key prefix in the distributed system, memory in the
 * embedded one — so a warm product list costs one gateway → catalog call and no Postgres query.
 * Everything the cache holds is dropped
 *   - right after any catalog change answers (an action with a non-GET route): its writer, and
 *     anyone after it, reads the change at once;
 *   - when the catalog takes in inventory's stock events (`inventory.created` / `inventory.updated`:
 *     the stock shown in the lists changed) — the service calls `cleanCatalogCache()` then;
 *   - at the latest after `CATALOG_CACHE_TTL_S` seconds, which also bounds a read that raced a
 *     change (started before the commit, stored after the clean).
 */
import type { ServiceSchema } from "moleculer";

export const CATALOG_CACHE_PATTERN = "catalog.**";

/** The catalog's cached reads: what varies their answer. Admins see inactive products, so the role is part of the key. */
export const catalogCacheKeys = {
	listProducts: ["q", "categoryId", "vendorId", "page", "pageSize", "#user.role"],
	getProduct: ["id", "#user.role"]
};

export interface CatalogCacheMethods {
	cleanCatalogCache(): Promise<void>;
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
		methods: {
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
