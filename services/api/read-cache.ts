/**
 * The gateway's own copy of the catalog's public reads (product list, product, categories), so a
 * warm read is answered from this process's memory: no RabbitMQ round trip, no catalog, no Redis.
 *
 * What a cached answer depends on: the action, its parameters and the caller's role (an admin sees
 * drafts) — exactly what the catalog's own cache keys on.
 *
 * It is dropped, whole:
 *   - when the catalog drops its cache (any catalog change, any stock change): the catalog
 *     broadcasts `catalog.cacheCleared` and every gateway clears;
 *   - when a write (any request that is not a GET) passes through this gateway, as soon as it
 *     answered: whoever made a change reads it at once on the gateway they made it through,
 *     without waiting for the broadcast;
 *   - at the latest after `GATEWAY_CACHE_TTL_MS`, which bounds what a lost broadcast (a gateway
 *     disconnected from RabbitMQ at that moment) can leave behind.
 * A read that started before a clear and answered after it is not stored (the generation moved),
 * so a clear is never undone by a slow read.
 */
export const GATEWAY_CACHED_READS = new Set(["catalog.listProducts", "catalog.getProduct", "catalog.listCategories"]);

interface Entry {
	/** The answer as sent: UTF-8 bytes, encoded once. */
	body: Buffer;
	etag: string;
	until: number;
}

export class ReadCache {
	private readonly entries = new Map<string, Entry>();
	private generationNo = 0;

	constructor(
		private readonly ttlMs: number,
		private readonly maxEntries = 2000
	) {}

	get enabled() {
		return this.ttlMs > 0;
	}

	get generation() {
		return this.generationNo;
	}

	/** The key of a cacheable read, or null (other actions, or the cache switched off). */
	keyOf(action: string, params: unknown, role: string | undefined): string | null {
		if (!this.enabled || !GATEWAY_CACHED_READS.has(action)) return null;
		return `${action}|${role ?? "anonymous"}|${JSON.stringify(params)}`;
	}

	get(key: string): Entry | null {
		const e = this.entries.get(key);
		if (!e) return null;
		if (e.until <= Date.now()) {
			this.entries.delete(key);
			return null;
		}
		return e;
	}

	/** Stores an answer read while the generation was `generation`; refused when a clear came between. */
	set(key: string, generation: number, body: Buffer, etag: string) {
		if (!this.enabled || generation !== this.generationNo) return;
		if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
		this.entries.set(key, { body, etag, until: Date.now() + this.ttlMs });
	}

	clear() {
		this.generationNo++;
		this.entries.clear();
	}

	get size() {
		return this.entries.size;
	}
}
