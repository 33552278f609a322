/**
 * knex bound to the service's own schema. Migrations run at start. Inside a transaction every
 * query must use the transaction (`this.table(name, trx)`): PGlite has one connection, and a
 * query outside the transaction would wait for it forever.
 *
 * Also: idempotent actions (a key's first answer — result or refusal — is stored in the same
 * transaction as the effect and returned to every repeat) and idempotent event handling
 * (an inbox of handled event ids, written in the same transaction as the handler's effect).
 *
 * A transaction opened here holds back the outbox rows its work records (outbox.mixin's
 * `record`) and writes them as its last statement — in the same statement as its idempotency key
 * when it has one — so an event costs no round trip of its own (a saga step recording two events
 * was three inserts, now one).
 *
 * On PostgreSQL a transaction opened here is `BEGIN` … `COMMIT` on one connection taken from the
 * pool, not `knex.transaction`: knex builds a whole knex instance for every transaction, ≈ 280 µs
 * of CPU here (`npm run bench:db`), and a checkout opens ≈ 41 of them. What `fn` is handed (typed
 * `Trx`) supports what our code does with a transaction — `this.table(name, trx)` and
 * `trx.raw(sql, bindings)` — and nothing else of knex's Transaction (no `trx("table")`, no nested
 * transaction). Embedded (PGlite) keeps knex's own transaction.
 *
 * Retention: inbox rows and sent outbox rows older than INBOX_RETENTION_DAYS, and idempotency
 * keys older than IDEMPOTENCY_RETENTION_DAYS (both 7 by default), are deleted every
 * PRUNE_INTERVAL_MS by one replica at a time (a Postgres advisory lock per schema). Inside the
 * window nothing changes: a redelivered event or a repeated key is still recognised.
 */
import { createHash } from "node:crypto";
import type { Knex } from "knex";
import type { Context, ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import type { EventEnvelope } from "../contracts/events";
import { isClientError } from "../contracts/errors";
import { acquireKnex, migrate, releaseKnex, retryStalePlan } from "../infra/database";
import { settings } from "../infra/settings";

/**
 * What a transaction of this mixin offers, and all that may be done with it: queries through
 * `this.table(name, trx)`, raw SQL through `trx.raw(sql, bindings)`, and `executionPromise`
 * (resolved at commit, rejected at rollback). On PostgreSQL it is not a knex Transaction (see the
 * header), so nothing else of knex's — `trx("table")`, `trx.select()`, a nested transaction — would
 * work: this type lets the compiler say so.
 */
export interface Trx {
	raw(sql: string, bindings?: readonly Knex.RawBinding[] | Knex.ValueDict): Knex.Raw;
	readonly executionPromise: Promise<unknown>;
}

export interface DbMethods {
	knex: Knex;
	schemaName: string;
	/** Resolves once the schema's migrations have run. */
	schemaReady: Promise<void>;
	/** A query builder on a table of this service's schema (inside `trx` when given). */
	table(name: string, trx?: Trx): Knex.QueryBuilder;
	/** Runs `fn` in one transaction. */
	transaction<T>(fn: (trx: Trx) => Promise<T>): Promise<T>;
	/** First call with `key` runs `fn` in a transaction and stores its answer; repeats get the same answer. */
	idempotent<T>(key: string | undefined, action: string, fn: (trx: Trx) => Promise<T>): Promise<T>;
	/**
	 * For an action that must call outside (a payment provider) between checking and storing its
	 * answer, so cannot run in one transaction: the answer stored under `key`, if any (a stored
	 * refusal is thrown; a key used by another action is 422 IDEMPOTENCY_KEY_REUSED).
	 */
	storedAnswer(key: string | undefined, action: string, trx?: Trx): Promise<{ found: false } | { found: true; result: unknown }>;
	/** Claims `key` inside `trx` (a concurrent claim waits for this one to commit); false when it was claimed before. */
	claimKey(trx: Trx, key: string, action: string): Promise<boolean>;
	/**
	 * Stores an answer under `key` (inside `trx` when the key was claimed there) and gives it back:
	 * the result returned, the refusal thrown (outside a transaction; inside, the caller throws it
	 * after the commit). When another call stored an answer first, that one is given instead.
	 */
	settle(key: string | undefined, action: string, answer: StoredAnswer, trx?: Trx): Promise<unknown>;
	/** Stores a refusal under `key` and throws it. */
	refuse(key: string | undefined, action: string, err: Errors.MoleculerError): Promise<never>;
	/**
	 * Erasure: forgets the stored answers that name `value` in one of `fields` of their result
	 * (they may repeat personal data); their keys start afresh.
	 */
	forgetAnswers(trx: Trx, fields: string[], value: string): Promise<number>;
	/**
	 * A request delivered a second time — the replica that took it died after its commit, before
	 * it answered, and RabbitMQ handed the message to another — keeps its message id (`ctx.id`).
	 * `requestApplied` tells whether a change already ran for that id; `applyOnce` runs the change
	 * in a transaction that first records the id (a twin arriving meanwhile waits at that record,
	 * then finds it): false, with nothing changed, when it ran before. For changes whose repeat
	 * would add up or fail (add a quantity, remove a line) and that a client may send without an
	 * Idempotency-Key.
	 */
	requestApplied(requestId: string): Promise<boolean>;
	applyOnce(requestId: string, action: string, fn: (trx: Trx) => Promise<void>): Promise<boolean>;
	/** Runs `fn` once per (handler, event_id); a redelivered event is skipped. Returns false when skipped. */
	handleOnce(event: EventEnvelope, handler: string, fn: (trx: Trx) => Promise<void>): Promise<boolean>;
	/** Deletes messaging rows past their retention; null when another replica holds the job's lock. */
	pruneMessaging(): Promise<PruneResult | null>;
}

/** An action's answer as stored under its idempotency key: a result, or a refusal. */
export type StoredAnswer = { result: unknown } | { error: Errors.MoleculerError };

export interface PruneResult {
	inbox: number;
	idempotencyKeys: number;
	outbox: number;
}

const PRUNE_BATCH = 5000;

/** The advisory lock that lets one replica of a service prune its schema at a time. */
export function pruneLockName(schema: string): string {
	return `${schema}:prune-messaging`;
}

export function DbMixin(service: string): Partial<ServiceSchema> {
	const schemaName = `${settings.schemaPrefix}${service}`;
	return {
		created(this: any) {
			this.schemaName = schemaName;
			this.knex = acquireKnex(settings);
			// Other mixins (the outbox relay) wait for the schema before touching it.
			this.schemaReady = new Promise<void>(resolve => (this.markSchemaReady = resolve));
		},
		async started(this: any) {
			await migrate(this.knex, service, schemaName);
			this.markSchemaReady();
			// First run at a random point of the interval, so replicas and services do not all start at once.
			const every = settings.pruneIntervalMs;
			if (every > 0) {
				const run = () =>
					this.pruneMessaging()
						.then((r: PruneResult | null) => r && r.inbox + r.idempotencyKeys + r.outbox > 0 && this.logger.info(`Pruned ${r.inbox} inbox rows, ${r.idempotencyKeys} idempotency keys, ${r.outbox} sent outbox rows`))
						.catch((err: Error) => this.logger.warn(`Pruning messaging rows failed: ${err.message}`))
						.finally(() => this.pruneTimer && (this.pruneTimer = setTimeout(run, every)));
				this.pruneTimer = setTimeout(run, Math.floor(Math.random() * every));
			}
		},
		async stopped(this: any) {
			const timer = this.pruneTimer;
			this.pruneTimer = null;
			clearTimeout(timer);
			await releaseKnex(settings);
		},
		methods: {
			table(this: DbMethods, name: string, trx?: Trx) {
				return tableIn(this.knex, this.schemaName, name, trx);
			},
			transaction<T>(this: DbMethods, fn: (trx: Trx) => Promise<T>): Promise<T> {
				const work = async (trx: Trx) => {
					holdOutboxRows(trx);
					const result = await fn(trx);
					await withHeldOutboxRows(this, trx);
					return result;
				};
				// A prepared statement gone stale under a migration of another process rolls the whole
				// transaction back; it runs once more with the statement prepared afresh.
				return retryStalePlan(() => (settings.databaseUrl ? onConnection(this.knex, work) : this.knex.transaction(work)));
			},
			async idempotent<T>(this: DbMethods, key: string | undefined, action: string, fn: (trx: Trx) => Promise<T>): Promise<T> {
				if (!key) return this.transaction(fn);
				// The effect first, then the key with its answer, in one transaction: a first call (the
				// usual case) costs one insert and no read. A repeat runs into the key at the insert —
				// a concurrent one waits there for the first to commit — rolls its own work back and
				// answers what the first stored.
				try {
					return await this.transaction(async trx => {
						const result = await fn(trx);
						const stored = await withHeldOutboxRows(this, trx, this.table("idempotency_keys", trx)
							.insert({ key, action, result: JSON.stringify(result ?? null) })
							.onConflict("key")
							.ignore()
							.returning("key"));
						if (stored.length === 0) throw new KeyTaken();
						return result;
					});
				} catch (err: any) {
					// A repeat, or a twin that ran into the first call's effects (a unique row, a refusal
					// its own change caused): the first answer is the answer.
					const first = await this.table("idempotency_keys").where({ key }).first().catch(() => undefined);
					if (first) return replayAnswer(first, action);
					if (err instanceof KeyTaken) throw new Error(`Idempotency key ${key} vanished while it was being answered; try again`);
					// A refusal is an answer too: a repeat must get the same refusal, not a second try. Not
					// under a request's own id (no key came): a refused request changes nothing, and its copy
					// after a crash is simply refused again.
					if (isClientError(err) && !key.startsWith(requestKey(""))) {
						const kept = await this.table("idempotency_keys")
							.insert({ key, action, error: JSON.stringify({ message: err.message, code: err.code, type: err.type, data: err.data ?? null }) })
							.onConflict("key")
							.ignore()
							.returning("key");
						// Another call answered in between: its answer wins.
						if (kept.length === 0) return replayAnswer(await this.table("idempotency_keys").where({ key }).first(), action);
					}
					throw err;
				}
			},
			async storedAnswer(this: DbMethods, key: string | undefined, action: string, trx?: Trx) {
				if (!key) return { found: false as const };
				const row = await this.table("idempotency_keys", trx).where({ key }).first();
				if (!row || (row.result === null && row.error === null)) return { found: false as const };
				try {
					return { found: true as const, result: replay(row, action) };
				} catch (err) {
					throw err instanceof ReplayedError ? err.original : err;
				}
			},
			async claimKey(this: DbMethods, trx: Trx, key: string, action: string) {
				const claimed = await this.table("idempotency_keys", trx).insert({ key, action }).onConflict("key").ignore().returning("key");
				return claimed.length > 0;
			},
			async settle(this: DbMethods, key: string | undefined, action: string, answer: StoredAnswer, trx?: Trx) {
				if (key) {
					const value = "error" in answer
						? { error: JSON.stringify({ message: answer.error.message, code: answer.error.code, type: answer.error.type, data: answer.error.data ?? null }) }
						: { result: JSON.stringify(answer.result ?? null) };
					if (trx) {
						// The key row was claimed in this transaction: the caller throws a refusal after commit.
						await withHeldOutboxRows(this, trx, this.table("idempotency_keys", trx).where({ key }).update(value).returning("key"));
						return "error" in answer ? undefined : answer.result;
					}
					const inserted = await this.table("idempotency_keys").insert({ key, action, ...value }).onConflict("key").ignore().returning("key");
					if (inserted.length === 0) {
						const first = await this.storedAnswer(key, action);
						if (first.found) return first.result;
					}
				}
				if ("error" in answer) throw answer.error;
				return answer.result;
			},
			async requestApplied(this: DbMethods, requestId: string) {
				return !!(await this.table("idempotency_keys").where({ key: requestKey(requestId) }).first("key"));
			},
			async applyOnce(this: DbMethods, requestId: string, action: string, fn: (trx: Trx) => Promise<void>) {
				try {
					await this.transaction(async trx => {
						if (!(await this.claimKey(trx, requestKey(requestId), action))) throw new KeyTaken();
						await fn(trx);
					});
					return true;
				} catch (err) {
					if (err instanceof KeyTaken) return false;
					throw err;
				}
			},
			async refuse(this: DbMethods, key: string | undefined, action: string, err: Errors.MoleculerError): Promise<never> {
				await this.settle(key, action, { error: err });
				throw err;
			},
			async forgetAnswers(this: DbMethods, trx: Trx, fields: string[], value: string) {
				if (fields.length === 0) return 0;
				const q = this.table("idempotency_keys", trx);
				for (const f of fields) q.orWhereRaw("result->>? = ?", [f, value]);
				return q.delete();
			},
			async pruneMessaging(this: DbMethods): Promise<PruneResult | null> {
				const done: PruneResult = { inbox: 0, idempotencyKeys: 0, outbox: 0 };
				const jobs: Array<[keyof PruneResult, string, string, number]> = [
					["inbox", "inbox", "handled_at", settings.inboxRetentionDays],
					["idempotencyKeys", "idempotency_keys", "created_at", settings.idempotencyRetentionDays],
					// Unsent rows are never pruned: they still have to be published.
					["outbox", "outbox", "sent_at", settings.inboxRetentionDays]
				];
				for (const [what, table, column, days] of jobs) {
					for (;;) {
						// Each batch is its own short transaction that holds the schema's lock; a replica
						// that cannot take it leaves the job to the one that has it.
						const deleted = await this.transaction(async trx => {
							const lock = await trx.raw("SELECT pg_try_advisory_xact_lock(hashtext(?)) AS ok", [pruneLockName(this.schemaName)]);
							if (!(lock.rows ?? lock)[0].ok) return null;
							const r = await trx.raw(
								`WITH gone AS (DELETE FROM ??.?? WHERE ctid IN (SELECT ctid FROM ??.?? WHERE ?? < now() - interval '1 second' * ? LIMIT ${PRUNE_BATCH}) RETURNING 1)
								 SELECT count(*)::int AS n FROM gone`,
								[this.schemaName, table, this.schemaName, table, column, Math.round(days * 86_400)]
							);
							return Number((r.rows ?? r)[0].n);
						});
						if (deleted === null) return null;
						done[what] += deleted;
						if (deleted < PRUNE_BATCH) break;
					}
				}
				return done;
			},
			async handleOnce(this: DbMethods, event: EventEnvelope, handler: string, fn: (trx: Trx) => Promise<void>) {
				return this.transaction(async trx => {
					const inserted = await this.table("inbox", trx)
						.insert({ handler, event_id: event.event_id, event_name: event.event_name })
						.onConflict(["handler", "event_id"])
						.ignore()
						.returning("event_id");
					if (inserted.length === 0) return false;
					await fn(trx);
					return true;
				});
			}
		}
	};
}

const HELD = Symbol("outbox rows held until the end of the transaction");

/** From now on the outbox rows recorded in `trx` wait for `withHeldOutboxRows` (a transaction not marked so writes them at once). */
function holdOutboxRows(trx: Trx) {
	(trx as any)[HELD] ??= [];
}

/**
 * The outbox rows held for `trx` (outbox.mixin's `keep`), taken out: they must be written before
 * the transaction commits. Undefined when `trx` writes its rows at once.
 */
export function heldOutboxRows(trx: Trx): Record<string, unknown>[] | undefined {
	let outer: any = trx;
	while (outer.parentTransaction) outer = outer.parentTransaction;
	return outer[HELD];
}

/**
 * Writes the outbox rows held for `trx`, in one statement with `last` when given (a data-modifying
 * CTE: both run, in this transaction, whatever `last` returns), and answers what `last` returns.
 */
export async function withHeldOutboxRows(db: DbMethods, trx: Trx, last?: Knex.QueryBuilder): Promise<any[]> {
	const held = heldOutboxRows(trx);
	const rows = held?.splice(0, held.length) ?? [];
	if (rows.length === 0) return last ? await last : [];
	const insert = db.table("outbox", trx).insert(rows);
	if (!last) {
		await insert;
		return [];
	}
	const a = insert.toSQL();
	const b = last.toSQL();
	const answer = await trx.raw(`WITH outbox_rows AS (${a.sql}) ${b.sql}`, [...a.bindings, ...b.bindings]);
	return (answer as any).rows ?? answer;
}

/**
 * A transaction on one pooled connection (see the header): its statements are built by the
 * service's knex and sent on `connection`. `executionPromise` settles as knex's does — resolved
 * at commit, rejected at rollback — so the outbox publishes what committed, and only that.
 */
class ConnectionTransaction implements Trx {
	readonly executionPromise: Promise<void>;
	private settle!: (committed: boolean) => void;

	constructor(private readonly knex: Knex, readonly connection: unknown) {
		this.executionPromise = new Promise<void>((resolve, reject) => {
			this.settle = committed => (committed ? resolve() : reject(new Error("The transaction was rolled back")));
		});
		this.executionPromise.catch(() => undefined);
	}

	raw(sql: string, bindings?: readonly Knex.RawBinding[] | Knex.ValueDict) {
		return (bindings === undefined ? this.knex.raw(sql) : this.knex.raw(sql, bindings as any)).connection(this.connection);
	}

	ended(committed: boolean) {
		this.settle(committed);
	}
}

/** A query on `schema`.`name`, in `trx` when given (either kind of transaction). */
export function tableIn(knex: Knex, schema: string, name: string, trx?: Trx): Knex.QueryBuilder {
	if (trx instanceof ConnectionTransaction) return knex.withSchema(schema).table(name).connection(trx.connection);
	return ((trx as Knex.Transaction | undefined) ?? knex).withSchema(schema).table(name);
}

/** Runs `fn` between BEGIN and COMMIT on one connection of `knex`'s pool; any failure rolls it back. */
export async function onConnection<T>(knex: Knex, fn: (trx: Trx) => Promise<T>): Promise<T> {
	const client = knex.client as any;
	const connection = await client.acquireConnection();
	// Marks the connection as in a transaction for infra/database.ts: a stale prepared statement
	// then fails the transaction (to be run again whole) instead of being resent alone.
	connection.__knexTxId = "db-mixin";
	const trx = new ConnectionTransaction(knex, connection);
	let committed = false;
	try {
		await knex.raw("BEGIN").connection(connection);
		const result = await fn(trx);
		await knex.raw("COMMIT").connection(connection);
		committed = true;
		return result;
	} finally {
		if (!committed) await knex.raw("ROLLBACK").connection(connection).catch(() => undefined);
		delete connection.__knexTxId;
		await client.releaseConnection(connection);
		trx.ended(committed);
	}
}

/** The key was stored by another call first: this call's transaction rolls back and answers as that one did. */
class KeyTaken extends Error {}

/** The idempotency key under which a request's message id is recorded (a request sent without a key of its own). */
export function requestKey(requestId: string): string {
	return `request:${requestId}`;
}

/**
 * The key a write from outside is applied once under: the caller's own (`idempotencyKey`, as a
 * saga sends it), else the gateway's Idempotency-Key header scoped to the action and to `scope`
 * (who or what the write concerns, so two callers' keys never meet), else the request's message
 * id — a copy RabbitMQ hands to another replica, after the one that took it died between its
 * commit and its answer, gets the first answer instead of acting twice.
 */
export function writeKey(ctx: Context<any, any>, action: string, scope: string): string {
	if (ctx.params?.idempotencyKey) return ctx.params.idempotencyKey;
	const header = ctx.meta?.idempotencyKey;
	if (typeof header !== "string" || !header) return requestKey(ctx.id);
	return "http:" + createHash("sha256").update(`${action}\n${scope}\n${header}`).digest("hex");
}

class ReplayedError extends Error {
	constructor(public original: Error) {
		super(original.message);
	}
}

/** The stored answer of a key: its result returned, its refusal thrown as it was first given. */
function replayAnswer(row: any, action: string): any {
	try {
		return replay(row, action);
	} catch (err) {
		throw err instanceof ReplayedError ? err.original : err;
	}
}

function replay(row: any, action: string): any {
	if (row.action !== action) {
		throw new Errors.MoleculerClientError(
			`Idempotency key was used for ${row.action}, not ${action}`,
			422,
			"IDEMPOTENCY_KEY_REUSED"
		);
	}
	if (row.error) {
		const e = typeof row.error === "string" ? JSON.parse(row.error) : row.error;
		throw new ReplayedError(new Errors.MoleculerClientError(e.message, e.code, e.type, e.data ?? undefined));
	}
	if (row.result === null || row.result === undefined) return row.result;
	return typeof row.result === "string" ? JSON.parse(row.result) : row.result;
}
