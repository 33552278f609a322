/**
 * knex bound to the service's own schema. Migrations run at start. Inside a transaction every
 * query must use the transaction (`this.table(name, trx)`): PGlite has one connection, and a
 * query outside the transaction would wait for it forever.
 *
 * Also: idempotent actions (a key's first answer — result or refusal — is stored in the same
 * transaction as the effect and returned to every repeat) and idempotent event handling
 * (an inbox of handled event ids, written in the same transaction as the handler's effect).
 */
import type { Knex } from "knex";
import type { ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import type { EventEnvelope } from "../contracts/events";
import { isClientError } from "../contracts/errors";
import { acquireKnex, migrate, releaseKnex } from "./database";
import { settings } from "./settings";

export interface DbMethods {
	knex: Knex;
	schemaName: string;
	/** Resolves once the schema's migrations have run. */
	schemaReady: Promise<void>;
	/** A query builder on a table of this service's schema (inside `trx` when given). */
	table(name: string, trx?: Knex.Transaction): Knex.QueryBuilder;
	/** Runs `fn` in one transaction. */
	transaction<T>(fn: (trx: Knex.Transaction) => Promise<T>): Promise<T>;
	/** First call with `key` runs `fn` in a transaction and stores its answer; repeats get the same answer. */
	idempotent<T>(key: string | undefined, action: string, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T>;
	/** Runs `fn` once per (handler, event_id); a redelivered event is skipped. Returns false when skipped. */
	handleOnce(event: EventEnvelope, handler: string, fn: (trx: Knex.Transaction) => Promise<void>): Promise<boolean>;
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
		},
		async stopped(this: any) {
			await releaseKnex(settings);
		},
		methods: {
			table(this: DbMethods, name: string, trx?: Knex.Transaction) {
				return (trx ?? this.knex).withSchema(this.schemaName).table(name);
			},
			transaction<T>(this: DbMethods, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
				return this.knex.transaction(fn);
			},
			async idempotent<T>(this: DbMethods, key: string | undefined, action: string, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
				if (!key) return this.transaction(fn);
				try {
					const stored = await this.table("idempotency_keys").where({ key }).first();
					if (stored) return replay(stored, action);
					return await this.transaction(async trx => {
						// A concurrent call with the same key blocks here until the first commits.
						const inserted = await this.table("idempotency_keys", trx)
							.insert({ key, action })
							.onConflict("key")
							.ignore()
							.returning("key");
						if (inserted.length === 0) {
							const first = await this.table("idempotency_keys", trx).where({ key }).first();
							return replay(first, action);
						}
						const result = await fn(trx);
						await this.table("idempotency_keys", trx)
							.where({ key })
							.update({ result: JSON.stringify(result ?? null) });
						return result;
					});
				} catch (err: any) {
					if (err instanceof ReplayedError) throw err.original;
					// A refusal is an answer too: a repeat must get the same refusal, not a second try.
					if (isClientError(err)) {
						await this.table("idempotency_keys")
							.insert({
								key,
								action,
								error: JSON.stringify({ message: err.message, code: err.code, type: err.type, data: err.data ?? null })
							})
							.onConflict("key")
							.ignore();
					}
					throw err;
				}
			},
			async handleOnce(this: DbMethods, event: EventEnvelope, handler: string, fn: (trx: Knex.Transaction) => Promise<void>) {
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

class ReplayedError extends Error {
	constructor(public original: Error) {
		super(original.message);
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
