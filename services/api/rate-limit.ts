/**
 * Fixed-window rate limits counted in a store every gateway replica shares (Redis), or in
 * memory in the embedded mode. While Redis is unreachable the limiter does not fail the
 * request: each replica counts in its own memory until Redis answers again (ResilientRateLimitStore). `hit` answers whether the request may go on and, if not,
 * how many seconds until the window resets (for `Retry-After`).
 */
import type Redis from "ioredis";

export interface RateLimitStore {
	/** Counts one hit of `key` in the window that starts at `windowStart` and answers the count. */
	increment(key: string, windowMs: number): Promise<number>;
	close(): Promise<void>;
}

/** One command per hit: the count goes up, and the window's key gets its expiry when it is made. */
const INCREMENT = `local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n`;

export class RedisRateLimitStore implements RateLimitStore {
	constructor(
		private redis: Redis,
		private prefix: string
	) {
		if (!(redis as any).rateLimitIncrement) redis.defineCommand("rateLimitIncrement", { numberOfKeys: 1, lua: INCREMENT });
	}

	async increment(key: string, windowMs: number): Promise<number> {
		const k = `${this.prefix}ratelimit:${key}:${Math.floor(Date.now() / windowMs)}`;
		return Number(await (this.redis as any).rateLimitIncrement(k, windowMs));
	}

	async close() {
		this.redis.disconnect();
	}
}

export class MemoryRateLimitStore implements RateLimitStore {
	private counts = new Map<string, { window: number; count: number }>();

	async increment(key: string, windowMs: number): Promise<number> {
		const window = Math.floor(Date.now() / windowMs);
		const entry = this.counts.get(key);
		if (!entry || entry.window !== window) {
			if (this.counts.size > 100_000) this.counts.clear();
			this.counts.set(key, { window, count: 1 });
			return 1;
		}
		return ++entry.count;
	}

	async close() {
		this.counts.clear();
	}
}

/**
 * Redis first; when a Redis command fails, this replica's memory counts instead, so the limits
 * still hold (per replica) and no request fails because the limiter's store is down.
 */
export class ResilientRateLimitStore implements RateLimitStore {
	private local = new MemoryRateLimitStore();
	degraded = false;

	constructor(
		private shared: RateLimitStore,
		private onChange: (degraded: boolean, err?: Error) => void = () => undefined
	) {}

	async increment(key: string, windowMs: number): Promise<number> {
		try {
			const count = await this.shared.increment(key, windowMs);
			if (this.degraded) {
				this.degraded = false;
				this.onChange(false);
			}
			return count;
		} catch (err) {
			if (!this.degraded) {
				this.degraded = true;
				this.onChange(true, err as Error);
			}
			return this.local.increment(key, windowMs);
		}
	}

	async close() {
		await this.shared.close();
		await this.local.close();
	}
}

export interface Limit {
	name: string;
	max: number;
	windowMs: number;
}

export async function hit(store: RateLimitStore, limit: Limit, client: string): Promise<{ allowed: boolean; remaining: number; retryAfterSeconds: number }> {
	const count = await store.increment(`${limit.name}:${client}`, limit.windowMs);
	const resetAt = (Math.floor(Date.now() / limit.windowMs) + 1) * limit.windowMs;
	return { allowed: count <= limit.max, remaining: Math.max(0, limit.max - count), retryAfterSeconds: Math.max(1, Math.ceil((resetAt - Date.now()) / 1000)) };
}
