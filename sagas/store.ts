/**
 * Where sagas live: one record per saga, changed only by compare-and-set on its version, a
 * lease naming the replica that drives it, and deadlines (retry times) that any replica can
 * fire. `RedisSagaStore` is the real one; `MemorySagaStore` has the same semantics in-process
 * for the embedded mode.
 */
import type Redis from "ioredis";
import type { Failure } from "./definition";

export type SagaStatus = "running" | "compensating" | "completed" | "compensated" | "parked";

export interface SagaRecord<D = any> {
	id: string;
	type: string;
	/** Derived from the step names: `reserving_stock`, `compensating_reserve_stock`, `completed` … */
	state: string;
	status: SagaStatus;
	/** Index of the current step of the definition. */
	step: number;
	stepStatus: "pending" | "started";
	data: D;
	version: number;
	/** Attempts of the current step or compensation. */
	attempts: number;
	/** When the next attempt is due (epoch ms). */
	nextAttemptAt?: number;
	failure?: Failure;
	parkedReason?: string;
	correlationId?: string;
	/** Steps whose action was sent at least once: what compensation must undo. */
	completedSteps: string[];
	compensatedSteps: string[];
	/** The outcome was handed to onFinished (checkout announces it once). */
	announced: boolean;
	history: Array<{ at: string; state: string; event: string; detail?: unknown }>;
	createdAt: string;
	updatedAt: string;
}

export const TERMINAL: ReadonlySet<SagaStatus> = new Set(["completed", "compensated", "parked"]);

/** A saga is someone's work until it is terminal and its outcome announced. */
export function isUnfinished(rec: SagaRecord): boolean {
	return !TERMINAL.has(rec.status) || (!rec.announced && rec.status !== "parked");
}

export interface SagaFilter {
	state?: string;
	type?: string;
	status?: string;
	limit?: number;
	offset?: number;
}

export interface SagaStore {
	/** Stores a new record; false when the id exists. */
	create(rec: SagaRecord): Promise<boolean>;
	get(id: string): Promise<SagaRecord | null>;
	/** Writes `rec` only if the stored version is `expectedVersion`; the stored version becomes rec.version. */
	compareAndSet(rec: SagaRecord, expectedVersion: number): Promise<boolean>;
	/** Takes or extends the lease for `owner`; false when another owner holds it. */
	acquireLease(id: string, owner: string, ttlMs: number): Promise<boolean>;
	releaseLease(id: string, owner: string): Promise<void>;
	/** Ids of sagas that still need a driver. */
	listUnfinished(): Promise<string[]>;
	/** Newest first. */
	list(filter: SagaFilter): Promise<{ rows: SagaRecord[]; total: number }>;
	scheduleDeadline(id: string, at: number): Promise<void>;
	/** Ids whose deadline has passed. */
	dueDeadlines(now: number, limit: number): Promise<string[]>;
	clearDeadline(id: string): Promise<void>;
	close(): Promise<void>;
}

const LIST_SCAN_LIMIT = 5000;

function matches(rec: SagaRecord, f: SagaFilter): boolean {
	return (!f.state || rec.state === f.state) && (!f.type || rec.type === f.type) && (!f.status || rec.status === f.status);
}

// --- Redis -------------------------------------------------------------------------------

const CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'json', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[4])
return 1`;

const CAS = `
local v = redis.call('HGET', KEYS[1], 'v')
if v == false or tonumber(v) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'json', ARGV[3])
if ARGV[4] == '1' then redis.call('SADD', KEYS[2], ARGV[5]) else redis.call('SREM', KEYS[2], ARGV[5]) end
return 1`;

const ACQUIRE = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

interface SagaCommands {
	sagaCreate(record: string, all: string, unfinished: string, version: number, json: string, score: number, id: string): Promise<number>;
	sagaCas(record: string, unfinished: string, expected: number, version: number, json: string, unfinishedFlag: string, id: string): Promise<number>;
	sagaAcquire(lease: string, owner: string, ttl: number): Promise<number>;
	sagaRelease(lease: string, owner: string): Promise<number>;
}

export class RedisSagaStore implements SagaStore {
	private redis: Redis & SagaCommands;
	private prefix: string;

	constructor(redis: Redis, opts: { prefix: string }) {
		this.prefix = opts.prefix;
		redis.defineCommand("sagaCreate", { numberOfKeys: 3, lua: CREATE });
		redis.defineCommand("sagaCas", { numberOfKeys: 2, lua: CAS });
		redis.defineCommand("sagaAcquire", { numberOfKeys: 1, lua: ACQUIRE });
		redis.defineCommand("sagaRelease", { numberOfKeys: 1, lua: RELEASE });
		this.redis = redis as Redis & SagaCommands;
	}

	private key(id: string) {
		return `${this.prefix}saga:${id}`;
	}
	private get allKey() {
		return `${this.prefix}sagas:all`;
	}
	private get unfinishedKey() {
		return `${this.prefix}sagas:unfinished`;
	}
	private get deadlinesKey() {
		return `${this.prefix}sagas:deadlines`;
	}

	async create(rec: SagaRecord): Promise<boolean> {
		const ok = await this.redis.sagaCreate(this.key(rec.id), this.allKey, this.unfinishedKey, rec.version, JSON.stringify(rec), Date.parse(rec.createdAt), rec.id);
		return ok === 1;
	}

	async get(id: string): Promise<SagaRecord | null> {
		const json = await this.redis.hget(this.key(id), "json");
		return json ? (JSON.parse(json) as SagaRecord) : null;
	}

	async compareAndSet(rec: SagaRecord, expectedVersion: number): Promise<boolean> {
		const ok = await this.redis.sagaCas(this.key(rec.id), this.unfinishedKey, expectedVersion, rec.version, JSON.stringify(rec), isUnfinished(rec) ? "1" : "0", rec.id);
		return ok === 1;
	}

	async acquireLease(id: string, owner: string, ttlMs: number): Promise<boolean> {
		return (await this.redis.sagaAcquire(`${this.key(id)}:lease`, owner, ttlMs)) === 1;
	}

	async releaseLease(id: string, owner: string): Promise<void> {
		await this.redis.sagaRelease(`${this.key(id)}:lease`, owner);
	}

	async listUnfinished(): Promise<string[]> {
		return this.redis.smembers(this.unfinishedKey);
	}

	async list(filter: SagaFilter): Promise<{ rows: SagaRecord[]; total: number }> {
		const limit = filter.limit ?? 20;
		const offset = filter.offset ?? 0;
		const ids = await this.redis.zrevrange(this.allKey, 0, LIST_SCAN_LIMIT - 1);
		const matching: SagaRecord[] = [];
		for (let i = 0; i < ids.length; i += 200) {
			const batch = ids.slice(i, i + 200);
			const pipeline = this.redis.pipeline();
			for (const id of batch) pipeline.hget(this.key(id), "json");
			const results = (await pipeline.exec()) ?? [];
			for (const [, json] of results) {
				if (typeof json === "string") {
					const rec = JSON.parse(json) as SagaRecord;
					if (matches(rec, filter)) matching.push(rec);
				}
			}
		}
		return { rows: matching.slice(offset, offset + limit), total: matching.length };
	}

	async scheduleDeadline(id: string, at: number): Promise<void> {
		await this.redis.zadd(this.deadlinesKey, at, id);
	}

	async dueDeadlines(now: number, limit: number): Promise<string[]> {
		return this.redis.zrangebyscore(this.deadlinesKey, "-inf", now, "LIMIT", 0, limit);
	}

	async clearDeadline(id: string): Promise<void> {
		await this.redis.zrem(this.deadlinesKey, id);
	}

	async close(): Promise<void> {
		/* the connection belongs to whoever made it */
	}
}

// --- In-process ----------------------------------------------------------------------------

export class MemorySagaStore implements SagaStore {
	private records = new Map<string, string>();
	private leases = new Map<string, { owner: string; until: number }>();
	private deadlines = new Map<string, number>();
	private unfinished = new Set<string>();

	async create(rec: SagaRecord): Promise<boolean> {
		if (this.records.has(rec.id)) return false;
		this.records.set(rec.id, JSON.stringify(rec));
		this.unfinished.add(rec.id);
		return true;
	}

	async get(id: string): Promise<SagaRecord | null> {
		const json = this.records.get(id);
		return json ? (JSON.parse(json) as SagaRecord) : null;
	}

	async compareAndSet(rec: SagaRecord, expectedVersion: number): Promise<boolean> {
		const current = await this.get(rec.id);
		if (!current || current.version !== expectedVersion) return false;
		this.records.set(rec.id, JSON.stringify(rec));
		if (isUnfinished(rec)) this.unfinished.add(rec.id);
		else this.unfinished.delete(rec.id);
		return true;
	}

	async acquireLease(id: string, owner: string, ttlMs: number): Promise<boolean> {
		const lease = this.leases.get(id);
		if (lease && lease.owner !== owner && lease.until > Date.now()) return false;
		this.leases.set(id, { owner, until: Date.now() + ttlMs });
		return true;
	}

	async releaseLease(id: string, owner: string): Promise<void> {
		if (this.leases.get(id)?.owner === owner) this.leases.delete(id);
	}

	async listUnfinished(): Promise<string[]> {
		return [...this.unfinished];
	}

	async list(filter: SagaFilter): Promise<{ rows: SagaRecord[]; total: number }> {
		const all = [...this.records.values()].map(j => JSON.parse(j) as SagaRecord).filter(r => matches(r, filter));
		all.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
		const offset = filter.offset ?? 0;
		return { rows: all.slice(offset, offset + (filter.limit ?? 20)), total: all.length };
	}

	async scheduleDeadline(id: string, at: number): Promise<void> {
		this.deadlines.set(id, at);
	}

	async dueDeadlines(now: number, limit: number): Promise<string[]> {
		return [...this.deadlines.entries()].filter(([, at]) => at <= now).slice(0, limit).map(([id]) => id);
	}

	async clearDeadline(id: string): Promise<void> {
		this.deadlines.delete(id);
	}

	async close(): Promise<void> {
		this.leases.clear();
	}
}
