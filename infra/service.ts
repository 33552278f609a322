/**
 * A typed way to declare a service: the schema reads like its API (name, mixins, settings,
 * actions with `rest` and joi `params`, channels), and `this` inside handlers knows the
 * methods that the db and outbox mixins give.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import Joi, { Schema as JoiSchema } from "joi";
import type { EventEnvelope } from "../contracts/events";
import type { DbMethods } from "../mixins/db.mixin";
import { messagingHealth } from "./messaging-health";
import type { OutboxMethods } from "../mixins/outbox.mixin";

export interface AuthUser {
	id: string;
	role: "customer" | "admin";
	email: string;
}

export interface Meta {
	correlationId?: string;
	user?: AuthUser;
	sagaId?: string;
	step?: string;
	$statusCode?: number;
	$responseHeaders?: Record<string, string>;
	[key: string]: unknown;
}

export type Ctx<P = any> = Context<P, Meta>;

export type ServiceThis<M = object, V = object> = Service & DbMethods & OutboxMethods & M & V;

export interface ActionDef<T> {
	/** REST alias hint for docs; the gateway keeps its own route table. */
	rest?: string;
	params?: JoiSchema;
	visibility?: "published" | "public" | "protected" | "private";
	timeout?: number;
	/** Kept by the broker's cacher under these params / `#meta` keys (see mixins/catalog-cache.ts). */
	cache?: { keys: string[]; ttl?: number };
	handler(this: T, ctx: Ctx): any;
}

export interface ChannelDef<T> {
	group?: string;
	maxInFlight?: number;
	maxRetries?: number;
	handler(this: T, event: EventEnvelope<any>, raw?: unknown): Promise<void>;
}

export interface CommerceServiceSchema<M, V> {
	name: string;
	mixins?: Partial<ServiceSchema>[];
	settings?: Record<string, any>;
	dependencies?: string[];
	actions?: Record<string, ActionDef<ServiceThis<M, V>>>;
	channels?: Record<string, ChannelDef<ServiceThis<M, V>>>;
	events?: Record<string, any>;
	methods?: M & ThisType<ServiceThis<M, V>>;
	created?(this: ServiceThis<M, V>): void;
	started?(this: ServiceThis<M, V>): Promise<void>;
	stopped?(this: ServiceThis<M, V>): Promise<void>;
}

/**
 * Every service also answers `<service>.describeParams`: the joi descriptions of its actions'
 * params, and `<service>.describeChannels`: the events it consumes and under which group. They
 * are not published over HTTP; the gateway builds its OpenAPI and AsyncAPI documents from them.
 * And `<service>.health`: whether the answering process can use RabbitMQ right now
 * (infra/messaging-health.ts); a replica that cannot take calls cannot answer it at all.
 */
export function defineService<M extends object = object, V extends object = object>(
	schema: CommerceServiceSchema<M, V>
): ServiceSchema {
	const actions = schema.actions ?? {};
	const describeParams: ActionDef<any> = {
		visibility: "public",
		handler() {
			const out: Record<string, unknown> = {};
			for (const [name, def] of Object.entries(actions)) {
				if (def.params && Joi.isSchema(def.params)) out[`${schema.name}.${name}`] = def.params.describe();
			}
			return out;
		}
	};
	const describeChannels: ActionDef<any> = {
		visibility: "public",
		handler: () => channelConsumers(schema)
	};
	const health: ActionDef<any> = {
		visibility: "public",
		handler(this: any) {
			return messagingHealth(this.broker);
		}
	};
	return { ...schema, actions: { ...actions, describeParams, describeChannels, health } } as unknown as ServiceSchema;
}

/** The events a service schema consumes, each with its consumer group (the service's name unless it says otherwise). */
export function channelConsumers(schema: { name: string; channels?: Record<string, { group?: string }> }): Array<{ event: string; group: string }> {
	return Object.entries(schema.channels ?? {}).map(([event, def]) => ({ event, group: def.group ?? schema.name }));
}
