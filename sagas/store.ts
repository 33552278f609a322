/**
 * Where sagas live: one record per saga, changed only by compare-and-set on its version, a
 * lease naming the replica that drives it, and deadlines (retry times) that any replica can
 * fire. `RedisSagaStore` is the real one; `MemorySagaStore` has the same semantics in-process
 * for the embedded mode.
 *
 * Redis keys (all under the prefix). Each saga belongs to one of `shards` shards (a hash of
 * its id); `{sN}` is that shard's hash tag, so on Redis Cluster a saga's record, its lease and
 * the index entries its scripts touch all live in one slot, and a script never crosses slots.
 * The indexes are kept per shard; a scan reads every shard and merges. On a single Redis the
 * layout is the same.
 *   saga:{sN}:<id>          hash { v: version, json: record }
 *   saga:{sN}:<id>:lease    the owner driving it, with a TTL
 *   sagas:{sN}:all          zset of the shard's ids by creation time (listing, newest first)
 *   sagas:{sN}:unfinished   set of the shard's ids that still need a driver, kept by the create/CAS scripts
 *   sagas:{sN}:deadlines    zset of the shard's ids by the time their next attempt (or the end of their wait) is due
 *   sagas:{sN}:waits        hash "<event>|<key>" → id of the saga whose waiting step waits for that event
 *                           (the shard of a wait entry is the hash of the entry, not of the saga)
 *   sagas:{sN}:expiring     zset of the shard's finished ids by the time their record expires
 *
 * Retention: a saga that finished for good (completed or compensated, and announced; never a
 * parked one) is kept `retentionMs` more, then its record expires (a Redis TTL set by the same
 * compare-and-set) and `forgetExpired` drops it from the listing. Without it the store grew by
 * one record (a few KB) per checkout, forever.
 */
import type { Cluster, Redis } from "ioredis";
import type { Failure } from "./definition";

/** Every status a saga can have; the last three end it (a parked saga waits for an operator). */
export const SAGA_STATUSES = ["running", "compensating", "completed", "compensated", "parked"] as const;
export type SagaStatus = (typeof SAGA_STATUSES)[number];
export const TERMINAL_STATUSES = ["completed", "compensated", "parked"] as const satisfies readonly SagaStatus[];

export interface SagaRecord<D = any> {
	id: string;
	/** The definition's name. */
	type: string;
	/** Derived from the step names: `started`, `reserving_stock`, `compensating_reserve_stock`, `completed` … */
	state: string;
	status: SagaStatus;
	/** Index of the step to run (or running) in the definition. */
	step: number;
	/**
	 * pending: `step` was not sent yet · started: `step` was sent and its answer is not recorded
	 * (after a crash it is sent again with the same key) · done: the step named by `state`
	 * answered and `step` moved on to the next one, not sent yet · waiting: `step` answered and
	 * waits for an outside event (see `wait`).
	 */
	stepStatus: "pending" | "started" | "waiting" | "done";
	data: D;
	version: number;
	/** Attempts of the current step or compensation. */
	attempts: number;
	/** When the next attempt is due (epoch ms). */
	nextAttemptAt?: number;
	/** The wait of a waiting step: set when its command is sent, gone once the wait ended. */
	wait?: SagaWait;
	/** Why the saga compensates. */
	failure?: Failure;
	parkedReason?: string;
	correlationId?: string;
	/** Steps whose action was sent at least once: what compensation must undo. */
	completedSteps: string[];
	compensatedSteps: string[];
	/** The outcome was handed to onFinished (a crash before that hands it again). */
	announced: boolean;
	history: Array<{ at: string; state: string; event: string; detail?: unknown }>;
	createdAt: string;
	updatedAt: string;
}

export interface SagaWait {
	step: string;
	/** Index entries "<event>|<key>" that lead an event to this saga. */
	keys: string[];
	/** The event that lets the saga go on. */
	events: string[];
	/** Events that fail the step. */
	failOn: string[];
	/** The deadline (epoch ms), set once the command answered. */
	until?: number;
	/** The event that ended the wait, kept until the saga acted on it. */
	received?: { event: string; payload: unknown; at: string };
}

export const TERMINAL: ReadonlySet<SagaStatus> = new Set(TERMINAL_STATUSES);

/** A saga needs a driver until it is terminal and its outcome announced (a parked one waits for an operator). */
export function isUnfinished(rec: SagaRecord): boolean {
	return !TERMINAL.has(rec.status) || (!rec.announced && rec.status !== "parked");
}

/** Completed or compensated, and announced: nothing will ever change it again (a parked saga waits for an operator). */
export function isFinishedForGood(rec: SagaRecord): boolean {
	return (rec.status === "completed" || rec.status === "compensated") && rec.announced;
}

export interface SagaFilter {
	state?: string;
	type?: string;
	status?: string;
	limit?: number;
	offset?: number;
}

export class SagaExistsError extends Error {
	readonly code = 409;
	readonly type = "SAGA_EXISTS";
	constructor(id: string) {
		super(`Saga ${id} exists already`);
		this.name = "SagaExistsError";
	}
}

/** The lease a write requires: held by `owner`, extended by `ttlMs` when the write goes through. */
export interface LeaseCheck {
	owner: string;
	ttlMs: number;
}

export interface SagaStore {
	/** Stores a new record; rejects with SagaExistsError when the id exists. */
	create(rec: SagaRecord): Promise<void>;
	get(id: string): Promise<SagaRecord | null>;
	/**
	 * Writes `rec` with version expectedVersion + 1, only if the stored version is `expectedVersion`
	 * — and, given a lease, only if no other owner holds the saga's lease; the write then gives the
	 * lease to `lease.owner` for `lease.ttlMs` (the driver's check and renewal in the same round
	 * trip). A lease that lapsed during a slow call and that nobody took is simply taken again.
	 */
	compareAndSet(rec: SagaRecord, expectedVersion: number, lease?: LeaseCheck): Promise<boolean>;
	/** Takes the lease for `owner`, or extends it when `owner` holds it; false when another owner holds it. */
	acquireLease(id: string, owner: string, ttlMs: number): Promise<boolean>;
	/** Extends the lease only if `owner` still holds it. */
	renewLease(id: string, owner: string, ttlMs: number): Promise<boolean>;
	/** Frees the lease if `owner` holds it. */
	releaseLease(id: string, owner: string): Promise<void>;
	/** Ids of sagas that still need a driver. */
	listUnfinished(): Promise<string[]>;
	/** Newest first. A filtered listing looks at the newest 5000 sagas. */
	list(filter: SagaFilter): Promise<{ rows: SagaRecord[]; total: number }>;
	scheduleDeadline(id: string, at: number): Promise<void>;
	/** Ids whose deadline has passed, earliest first. */
	dueDeadlines(now: number, limit: number): Promise<string[]>;
	clearDeadline(id: string): Promise<void>;
	/** Points each "<event>|<key>" entry at the saga that waits for it. */
	indexWait(id: string, keys: string[]): Promise<void>;
	/** The saga waiting for "<event>|<key>", if any. */
	findWait(key: string): Promise<string | null>;
	/** Removes the entries that still point at this saga. */
	clearWait(id: string, keys: string[]): Promise<void>;
	/** Who holds the saga's lease, if anyone. */
	leaseHolder(id: string): Promise<string | null>;
	/** Who holds each saga's lease (null: nobody), in the order of `ids`: one round trip, not one per saga. */
	leaseHolders(ids: string[]): Promise<Array<string | null>>;
	/** Drops from the listing the sagas whose retention ended by `now` (their records are gone); answers how many. */
	forgetExpired(now: number): Promise<number>;
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
if ARGV[5] ~= '' then
  local holder = redis.call('GET', KEYS[3])
  if holder and holder ~= ARGV[5] then return 0 end
end
local v = redis.call('HGET', KEYS[1], 'v')
if v == false or tonumber(v) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', tonumber(ARGV[1]) + 1, 'json', ARGV[2])
if ARGV[3] == '1' then redis.call('SADD', KEYS[2], ARGV[4]) else redis.call('SREM', KEYS[2], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6]) end
if ARGV[7] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[4])
end
return 1`;

const FORGET = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('ZREM', KEYS[2], unpack(ids))
end
return #ids`;

const ACQUIRE = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;

const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

const CLEAR_WAIT = `
for i, k in ipairs(ARGV) do
  if i > 1 and redis.call('HGET', KEYS[1], k) == ARGV[1] then redis.call('HDEL', KEYS[1], k) end
end
return 1`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

interface SagaCommands {
	sagaCreate(record: string, all: string, unfinished: string, version: number, json: string, score: number, id: string): Promise<number>;
	sagaCas(record: string, unfinished: string, lease: string, expiring: string, expected: number, json: string, unfinishedFlag: string, id: string, owner: string, ttl: number, retentionMs: number, expiresAt: number): Promise<number>;
	sagaForget(all: string, expiring: string, now: number): Promise<number>;
	sagaAcquire(lease: string, owner: string, ttl: number): Promise<number>;
	sagaRenew(lease: string, owner: string, ttl: number): Promise<number>;
	sagaRelease(lease: string, owner: string): Promise<number>;
	sagaClearWait(waits: string, id: string, ...keys: string[]): Promise<number>;
}

/** Shards of the indexes unless told otherwise. Changing it on a live store strands the sagas of the old layout. */
export const DEFAULT_SAGA_SHARDS = 16;

/** FNV-1a: a stable, cheap hash of an id or a wait entry to its shard. */
function shardOf(value: string, shards: number): number {
	let h = 0x811c9dc5;
	for (let i = 0; i < value.length; i++) {
		h ^= value.charCodeAt(i);
		h = Math.imul(h, 0x01000193);
	}
	return (h >>> 0) % shards;
}

/** The names of the store's keys: the store uses them, and tests look at Redis through them. */
export function sagaKeys(prefix: string, shards = DEFAULT_SAGA_SHARDS) {
	const tag = (n: number) => `{s${n}}`;
	const shard = (id: string) => shardOf(id, shards);
	return {
		shards,
		shard,
		record: (id: string) => `${prefix}saga:${tag(shard(id))}:${id}`,
		lease: (id: string) => `${prefix}saga:${tag(shard(id))}:${id}:lease`,
		all: (n: number) => `${prefix}sagas:${tag(n)}:all`,
		unfinished: (n: number) => `${prefix}sagas:${tag(n)}:unfinished`,
		deadlines: (n: number) => `${prefix}sagas:${tag(n)}:deadlines`,
		expiring: (n: number) => `${prefix}sagas:${tag(n)}:expiring`,
		/** The waits hash that holds entry "<event>|<key>". */
		waits: (entry: string) => `${prefix}sagas:${tag(shard(entry))}:waits`,
		waitsOfShard: (n: number) => `${prefix}sagas:${tag(n)}:waits`
	};
}

type SagaKeys = ReturnType<typeof sagaKeys>;

function groupBy<T>(items: T[], keyOf: (item: T) => string): Map<string, T[]> {
	const groups = new Map<string, T[]>();
	for (const item of items) {
		const k = keyOf(item);
		const group = groups.get(k);
		if (group) group.push(item);
		else groups.set(k, [item]);
	}
	return groups;
}

/** Pairs [member, score, member, score, …] as answered by a WITHSCORES command. */
function withScores(flat: string[]): Array<{ id: string; score: number }> {
	const out: Array<{ id: string; score: number }> = [];
	for (let i = 0; i < flat.length; i += 2) out.push({ id: flat[i]!, score: Number(flat[i + 1]) });
	return out;
}

export class RedisSagaStore implements SagaStore {
	private redis: (Redis | Cluster) & SagaCommands;
	private keys: SagaKeys;
	/** How long a saga that finished for good is kept (0: for ever). */
	private retentionMs: number;

	/**
	 * Works on one Redis or on a Redis Cluster (ioredis `Cluster`). The connection stays the
	 * caller's: close() leaves it open.
	 */
	constructor(redis: Redis | Cluster, opts: { prefix: string; shards?: number; retentionMs?: number }) {
		this.keys = sagaKeys(opts.prefix, opts.shards ?? DEFAULT_SAGA_SHARDS);
		this.retentionMs = Math.max(0, Math.round(opts.retentionMs ?? 0));
		redis.defineCommand("sagaCreate", { numberOfKeys: 3, lua: CREATE });
		redis.defineCommand("sagaCas", { numberOfKeys: 4, lua: CAS });
		redis.defineCommand("sagaForget", { numberOfKeys: 2, lua: FORGET });
		redis.defineCommand("sagaAcquire", { numberOfKeys: 1, lua: ACQUIRE });
		redis.defineCommand("sagaRenew", { numberOfKeys: 1, lua: RENEW });
		redis.defineCommand("sagaRelease", { numberOfKeys: 1, lua: RELEASE });
		redis.defineCommand("sagaClearWait", { numberOfKeys: 1, lua: CLEAR_WAIT });
		this.redis = redis as (Redis | Cluster) & SagaCommands;
	}

	private get shardNumbers(): number[] {
		return Array.from({ length: this.keys.shards }, (_, n) => n);
	}

	async create(rec: SagaRecord): Promise<void> {
		const n = this.keys.shard(rec.id);
		const ok = await this.redis.sagaCreate(this.keys.record(rec.id), this.keys.all(n), this.keys.unfinished(n), rec.version, JSON.stringify(rec), Date.parse(rec.createdAt), rec.id);
		if (ok !== 1) throw new SagaExistsError(rec.id);
	}

	async get(id: string): Promise<SagaRecord | null> {
		const json = await this.redis.hget(this.keys.record(id), "json");
		return json ? (JSON.parse(json) as SagaRecord) : null;
	}

	async compareAndSet(rec: SagaRecord, expectedVersion: number, lease?: LeaseCheck): Promise<boolean> {
		const next = { ...rec, version: expectedVersion + 1 };
		const n = this.keys.shard(rec.id);
		const retain = this.retentionMs > 0 && isFinishedForGood(next) ? this.retentionMs : 0;
		const ok = await this.redis.sagaCas(this.keys.record(rec.id), this.keys.unfinished(n), this.keys.lease(rec.id), this.keys.expiring(n), expectedVersion, JSON.stringify(next), isUnfinished(next) ? "1" : "0", rec.id, lease?.owner ?? "", lease?.ttlMs ?? 0, retain, Date.now() + retain);
		return ok === 1;
	}

	async acquireLease(id: string, owner: string, ttlMs: number): Promise<boolean> {
		return (await this.redis.sagaAcquire(this.keys.lease(id), owner, ttlMs)) === 1;
	}

	async renewLease(id: string, owner: string, ttlMs: number): Promise<boolean> {
		return (await this.redis.sagaRenew(this.keys.lease(id), owner, ttlMs)) === 1;
	}

	async releaseLease(id: string, owner: string): Promise<void> {
		await this.redis.sagaRelease(this.keys.lease(id), owner);
	}

	async listUnfinished(): Promise<string[]> {
		const perShard = await Promise.all(this.shardNumbers.map(n => this.redis.smembers(this.keys.unfinished(n))));
		return perShard.flat();
	}

	/** The newest `count` ids over all shards, newest first. */
	private async newest(count: number): Promise<string[]> {
		if (count <= 0) return [];
		const perShard = await Promise.all(this.shardNumbers.map(n => this.redis.zrevrange(this.keys.all(n), 0, count - 1, "WITHSCORES")));
		return perShard
			.flatMap(withScores)
			.sort((a, b) => b.score - a.score || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
			.slice(0, count)
			.map(e => e.id);
	}

	async list(filter: SagaFilter): Promise<{ rows: SagaRecord[]; total: number }> {
		const limit = filter.limit ?? 20;
		const offset = filter.offset ?? 0;
		if (!filter.state && !filter.type && !filter.status) {
			const [ids, counts] = await Promise.all([this.newest(offset + limit), Promise.all(this.shardNumbers.map(n => this.redis.zcard(this.keys.all(n))))]);
			return { rows: await this.getMany(ids.slice(offset)), total: counts.reduce((a, b) => a + b, 0) };
		}
		const matching: SagaRecord[] = [];
		const ids = await this.newest(LIST_SCAN_LIMIT);
		for (let i = 0; i < ids.length; i += 200) {
			for (const rec of await this.getMany(ids.slice(i, i + 200))) if (matches(rec, filter)) matching.push(rec);
		}
		return { rows: matching.slice(offset, offset + limit), total: matching.length };
	}

	/** Records in the order of `ids`; one pipeline per shard (a cluster pipeline must stay in one slot). */
	private async getMany(ids: string[]): Promise<SagaRecord[]> {
		if (ids.length === 0) return [];
		const found = new Map<string, SagaRecord>();
		await Promise.all(
			[...groupBy(ids, id => String(this.keys.shard(id))).values()].map(async group => {
				const pipeline = this.redis.pipeline();
				for (const id of group) pipeline.hget(this.keys.record(id), "json");
				const results = (await pipeline.exec()) ?? [];
				results.forEach(([, json], i) => {
					if (typeof json === "string") found.set(group[i]!, JSON.parse(json) as SagaRecord);
				});
			})
		);
		return ids.flatMap(id => found.get(id) ?? []);
	}

	async scheduleDeadline(id: string, at: number): Promise<void> {
		await this.redis.zadd(this.keys.deadlines(this.keys.shard(id)), at, id);
	}

	async dueDeadlines(now: number, limit: number): Promise<string[]> {
		const perShard = await Promise.all(this.shardNumbers.map(n => this.redis.zrangebyscore(this.keys.deadlines(n), "-inf", now, "WITHSCORES", "LIMIT", 0, limit)));
		return perShard
			.flatMap(withScores)
			.sort((a, b) => a.score - b.score)
			.slice(0, limit)
			.map(e => e.id);
	}

	async clearDeadline(id: string): Promise<void> {
		await this.redis.zrem(this.keys.deadlines(this.keys.shard(id)), id);
	}

	async indexWait(id: string, keys: string[]): Promise<void> {
		await Promise.all([...groupBy(keys, k => this.keys.waits(k)).entries()].map(([hash, entries]) => this.redis.hset(hash, Object.fromEntries(entries.map(k => [k, id])))));
	}

	async findWait(key: string): Promise<string | null> {
		return this.redis.hget(this.keys.waits(key), key);
	}

	async clearWait(id: string, keys: string[]): Promise<void> {
		await Promise.all([...groupBy(keys, k => this.keys.waits(k)).entries()].map(([hash, entries]) => this.redis.sagaClearWait(hash, id, ...entries)));
	}

	async leaseHolder(id: string): Promise<string | null> {
		return this.redis.get(this.keys.lease(id));
	}

	/** One pipeline per shard (a cluster pipeline must stay in one slot), all shards at once. */
	async leaseHolders(ids: string[]): Promise<Array<string | null>> {
		const holders = new Map<string, string | null>();
		await Promise.all(
			[...groupBy(ids, id => String(this.keys.shard(id))).values()].map(async group => {
				const pipeline = this.redis.pipeline();
				for (const id of group) pipeline.get(this.keys.lease(id));
				const results = (await pipeline.exec()) ?? [];
				results.forEach(([err, holder], i) => {
					if (err) throw err;
					holders.set(group[i]!, typeof holder === "string" ? holder : null);
				});
			})
		);
		return ids.map(id => holders.get(id) ?? null);
	}

	async forgetExpired(now: number): Promise<number> {
		const perShard = await Promise.all(this.shardNumbers.map(n => this.redis.sagaForget(this.keys.all(n), this.keys.expiring(n), now)));
		return perShard.reduce((a, b) => a + Number(b), 0);
	}

	async close(): Promise<void> {
		/* the connection belongs to whoever made it */
	}
}

// --- In-process ----------------------------------------------------------------------------

/** The same semantics in one process: records are kept as JSON so no caller shares an object with the store. */
export class MemorySagaStore implements SagaStore {
	private records = new Map<string, { version: number; json: string; expiresAt?: number }>();
	private retentionMs: number;

	constructor(opts: { retentionMs?: number } = {}) {
		this.retentionMs = Math.max(0, Math.round(opts.retentionMs ?? 0));
	}

	/** The stored record, unless its retention ended (it is gone, as in Redis; `forgetExpired` frees it). */
	private stored(id: string) {
		const r = this.records.get(id);
		return r?.expiresAt !== undefined && r.expiresAt <= Date.now() ? undefined : r;
	}
	private leases = new Map<string, { owner: string; until: number }>();
	private deadlines = new Map<string, number>();
	private unfinished = new Set<string>();
	private waits = new Map<string, string>();

	async create(rec: SagaRecord): Promise<void> {
		if (this.stored(rec.id)) throw new SagaExistsError(rec.id);
		this.records.set(rec.id, { version: rec.version, json: JSON.stringify(rec) });
		this.unfinished.add(rec.id);
	}

	async get(id: string): Promise<SagaRecord | null> {
		const stored = this.stored(id);
		return stored ? (JSON.parse(stored.json) as SagaRecord) : null;
	}

	async compareAndSet(rec: SagaRecord, expectedVersion: number, lease?: LeaseCheck): Promise<boolean> {
		const holder = lease ? this.holder(rec.id) : undefined;
		if (lease && holder !== undefined && holder !== lease.owner) return false;
		if (this.stored(rec.id)?.version !== expectedVersion) return false;
		const next = { ...rec, version: expectedVersion + 1 };
		const expiresAt = this.retentionMs > 0 && isFinishedForGood(next) ? Date.now() + this.retentionMs : undefined;
		this.records.set(rec.id, { version: next.version, json: JSON.stringify(next), expiresAt });
		if (lease) this.leases.set(rec.id, { owner: lease.owner, until: Date.now() + lease.ttlMs });
		if (isUnfinished(next)) this.unfinished.add(rec.id);
		else this.unfinished.delete(rec.id);
		return true;
	}

	private holder(id: string): string | undefined {
		const lease = this.leases.get(id);
		return lease && lease.until > Date.now() ? lease.owner : undefined;
	}

	async acquireLease(id: string, owner: string, ttlMs: number): Promise<boolean> {
		const holder = this.holder(id);
		if (holder !== undefined && holder !== owner) return false;
		this.leases.set(id, { owner, until: Date.now() + ttlMs });
		return true;
	}

	async renewLease(id: string, owner: string, ttlMs: number): Promise<boolean> {
		if (this.holder(id) !== owner) return false;
		this.leases.set(id, { owner, until: Date.now() + ttlMs });
		return true;
	}

	async releaseLease(id: string, owner: string): Promise<void> {
		if (this.holder(id) === owner) this.leases.delete(id);
	}

	async listUnfinished(): Promise<string[]> {
		return [...this.unfinished];
	}

	async list(filter: SagaFilter): Promise<{ rows: SagaRecord[]; total: number }> {
		const all = [...this.records.keys()].flatMap(id => {
			const r = this.stored(id);
			return r ? [JSON.parse(r.json) as SagaRecord] : [];
		}).filter(r => matches(r, filter));
		all.sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
		const offset = filter.offset ?? 0;
		return { rows: all.slice(offset, offset + (filter.limit ?? 20)), total: all.length };
	}

	async scheduleDeadline(id: string, at: number): Promise<void> {
		this.deadlines.set(id, at);
	}

	async dueDeadlines(now: number, limit: number): Promise<string[]> {
		return [...this.deadlines.entries()]
			.filter(([, at]) => at <= now)
			.sort((a, b) => a[1] - b[1])
			.slice(0, limit)
			.map(([id]) => id);
	}

	async clearDeadline(id: string): Promise<void> {
		this.deadlines.delete(id);
	}

	async indexWait(id: string, keys: string[]): Promise<void> {
		for (const k of keys) this.waits.set(k, id);
	}

	async findWait(key: string): Promise<string | null> {
		return this.waits.get(key) ?? null;
	}

	async clearWait(id: string, keys: string[]): Promise<void> {
		for (const k of keys) if (this.waits.get(k) === id) this.waits.delete(k);
	}

	async leaseHolder(id: string): Promise<string | null> {
		return this.holder(id) ?? null;
	}

	async leaseHolders(ids: string[]): Promise<Array<string | null>> {
		return ids.map(id => this.holder(id) ?? null);
	}

	async forgetExpired(now: number): Promise<number> {
		let n = 0;
		for (const [id, r] of this.records) {
			if (r.expiresAt !== undefined && r.expiresAt <= now) {
				this.records.delete(id);
				n++;
			}
		}
		return n;
	}

	async close(): Promise<void> {
		this.leases.clear();
	}
}
