/**
 * `npm run docs`: rewrites the generated parts of docs/ from the code, so they cannot drift:
 *
 * - docs/api.md, between the `generated: routes` markers: every route of the gateway's route
 *   table (services/api/routes.ts) with who may call it, its fields (from the actions' joi
 *   schemas, through the OpenAPI builder) and an example request;
 * - docs/sagas.md, between the `generated: sagas` markers: each saga definition
 *   (sagas/*.saga.ts) as a table of steps and a mermaid state diagram;
 * - docs/events.md, between the `generated: events` markers: the event catalogue
 *   (contracts/events.ts) with the exchange, the consuming queues and the main payload fields.
 *
 * `npm run docs -- --check` changes nothing and exits 1 when a file is out of date (the unit
 * test test/unit/documents.test.ts does the same).
 */
import fs from "node:fs";
import path from "node:path";
import parse from "joi-to-json";
import { EVENTS, EventName, INTEGRATION_EVENTS, INTEGRATION_EXCHANGE, IntegrationEventName, integrationRoutingKey } from "../contracts/events";
import { compensationState, forwardState, SagaDefinition } from "../sagas/definition";
import { SERVICE_NAMES } from "../services";
import { buildOpenApi } from "../services/api/openapi";
import { GATEWAY_ROUTES, RouteDef, ROUTES } from "../services/api/routes";
import { channelConsumers } from "../infra/service";

const ROOT = path.join(__dirname, "..");

// --- Regions ---------------------------------------------------------------------------

const begin = (name: string) => `<!-- generated: ${name} (npm run docs rewrites this part; edit the code, not this text) -->`;
const end = (name: string) => `<!-- end of generated: ${name} -->`;

/** The text with its marked region replaced by `body`; throws when the markers are missing. */
export function replaceRegion(text: string, name: string, body: string, file: string): string {
	const from = text.indexOf(begin(name));
	const to = text.indexOf(end(name));
	if (from < 0 || to < from) throw new Error(`${file} has no region '${name}': add the lines\n${begin(name)}\n${end(name)}`);
	return text.slice(0, from) + begin(name) + "\n\n" + body.trim() + "\n\n" + text.slice(to);
}

// --- What the services declare (loaded from their files; no broker is started) ------------

interface LoadedService {
	name: string;
	actions?: Record<string, any>;
	channels?: Record<string, { group?: string }>;
}

function loadServices(): LoadedService[] {
	return SERVICE_NAMES.map(name => {
		// eslint-disable-next-line @typescript-eslint/no-require-imports
		const mod = require(path.join(ROOT, "services", `${name}.service.ts`));
		return (mod.default ?? mod) as LoadedService;
	});
}

/** `<service>.<action>` → joi description of its params, as `<service>.describeParams` answers. */
export function paramDescriptions(services = loadServices()): Record<string, unknown> {
	const out: Record<string, unknown> = {};
	for (const s of services) Object.assign(out, s.actions?.describeParams?.handler?.() ?? {});
	return out;
}

/** Every (event, group) some service consumes. */
export function consumers(services = loadServices()): Array<{ event: string; group: string }> {
	return services.flatMap(s => channelConsumers(s));
}

// --- docs/api.md: the route reference ----------------------------------------------------

/** The section comments of routes.ts (`// Customers`) in front of each route, by `METHOD path`. */
function sectionsOfRouteTable(): Map<string, string> {
	const source = fs.readFileSync(path.join(ROOT, "services", "api", "routes.ts"), "utf8");
	const marks: Array<{ at: number; title: string }> = [];
	for (const m of source.matchAll(/^[ \t]*\/\/[ \t]*(.+?)[ \t]*$/gm)) marks.push({ at: m.index!, title: m[1]!.replace(/^[-=—\s]+|[-=—\s]+$/g, "") });
	const out = new Map<string, string>();
	for (const m of source.matchAll(/method:\s*"([A-Z]+)"[\s\S]*?path:\s*"([^"]+)"/g)) {
		const title = [...marks].reverse().find(x => x.at < m.index!)?.title;
		if (title) out.set(`${m[1]} ${m[2]}`, title);
	}
	return out;
}

const WHO: Record<string, string> = { public: "anyone", user: "a logged-in customer or admin (bearer token)", cart: "a logged-in customer, or a guest with the cart's X-Guest-Token", admin: "admins only" };

const SAMPLE_ID = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
const SAMPLES: Record<string, unknown> = {
	email: "ada@example.com",
	password: "Passw0rd-long",
	firstName: "Ada",
	lastName: "Lovelace",
	name: "Espresso machine",
	description: "A thing worth having",
	token: "<token from the email>",
	guestToken: "<guestToken>",
	currency: "PLN",
	amount: 12999,
	cardNumber: "4242424242424242",
	expMonth: 12,
	expYear: 2030,
	cvc: "123",
	blikCode: "777123",
	paymentDetails: { cardNumber: "4242424242424242", expMonth: 12, expYear: 2030, cvc: "123" },
	country: "PL",
	postalCode: "00-950",
	city: "Warszawa",
	street: "Marszałkowska 1",
	recipientName: "Ada Lovelace",
	reason: "stock count",
	trackingNumber: "TRK123456",
	carrier: "DPD",
	confirmation: true,
	quantity: 2,
	adjustment: -1,
	code: "WELCOME10",
	q: "espresso",
	page: 1,
	pageSize: 20,
	sku: "<sku>"
};

/** An example value for a JSON schema, guided by the field's name. */
export function example(schema: any, name = ""): unknown {
	if (!schema || typeof schema !== "object") return null;
	if (name in SAMPLES && (schema.type !== "object" || typeof SAMPLES[name] === "object")) return SAMPLES[name];
	if (schema.example !== undefined) return schema.example;
	if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum.find((v: unknown) => v !== null && v !== "") ?? schema.enum[0];
	if (schema.anyOf || schema.oneOf) return example((schema.anyOf ?? schema.oneOf)[0], name);
	const type = Array.isArray(schema.type) ? schema.type.find((t: string) => t !== "null") : schema.type;
	switch (type) {
		case "object": {
			const props: Record<string, any> = schema.properties ?? {};
			const required: string[] = schema.required ?? [];
			const keys = Object.keys(props);
			const chosen = required.length ? keys.filter(k => required.includes(k)) : keys.slice(0, 2);
			return Object.fromEntries(chosen.map(k => [k, example(props[k], k)]));
		}
		case "array":
			return [example(schema.items, name.replace(/s$/, ""))];
		case "integer":
		case "number":
			return Math.max(schema.minimum ?? 1, Math.min(schema.maximum ?? 1, 1)) || 1;
		case "boolean":
			return true;
		case "string":
			if (schema.format === "uuid") return SAMPLE_ID;
			if (schema.format === "email") return "ada@example.com";
			if (schema.format === "date-time") return "2026-01-31T12:00:00.000Z";
			if (schema.format === "date") return "2026-01-31";
			return /id$/i.test(name) ? SAMPLE_ID : name || "text";
		default:
			return null;
	}
}

function typeOf(schema: any): string {
	if (!schema) return "any";
	if (Array.isArray(schema.enum)) return schema.enum.filter((v: unknown) => v !== null && v !== "").map((v: unknown) => `\`${JSON.stringify(v)}\``).join(" \\| ");
	const type = Array.isArray(schema.type) ? schema.type.filter((t: string) => t !== "null").join(" or ") : (schema.type ?? "any");
	if (type === "array") return `array of ${typeOf(schema.items)}`;
	if (type === "object" && schema.properties && Object.keys(schema.properties).length) {
		const keys = Object.keys(schema.properties);
		if (keys.length === 2 && keys.includes("amount") && keys.includes("currency")) return "money `{amount, currency}`";
		return `object \`{${keys.join(", ")}}\``;
	}
	return schema.format ? `${type} (${schema.format})` : type;
}

function rules(schema: any): string {
	if (!schema) return "";
	const out: string[] = [];
	if (schema.minimum !== undefined) out.push(`≥ ${schema.minimum}`);
	if (schema.maximum !== undefined) out.push(`≤ ${schema.maximum}`);
	if (schema.minLength !== undefined) out.push(`length ≥ ${schema.minLength}`);
	if (schema.maxLength !== undefined) out.push(`length ≤ ${schema.maxLength}`);
	if (schema.minItems !== undefined) out.push(`≥ ${schema.minItems} items`);
	if (schema.maxItems !== undefined) out.push(`≤ ${schema.maxItems} items`);
	if (schema.pattern) out.push(`pattern \`${String(schema.pattern).replace(/\|/g, "\\|")}\``);
	if (schema.default !== undefined) out.push(`default \`${JSON.stringify(schema.default)}\``);
	if (Array.isArray(schema.type) && schema.type.includes("null")) out.push("may be null");
	if (schema.description) out.push(String(schema.description));
	return out.join(", ");
}

function shellQuote(s: string): string {
	return `'${s.replace(/'/g, `'\\''`)}'`;
}

function routeReference(r: RouteDef, op: any): string {
	const lines: string[] = [];
	const apiPath = `/api${r.path}`;
	lines.push(`#### \`${r.method} ${apiPath}\``, "");
	const facts = [`Who: ${WHO[r.access] ?? r.access}`, `answers \`${r.status ?? 200}\``, `action \`${r.action}\``];
	if (r.authLimit) facts.push("counted against the strict login/register rate limit");
	if ((r as { signed?: boolean }).signed) facts.push("signed: `X-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with `WEBHOOK_SECRET`, else 401 and nothing changes");
	lines.push(`${r.summary}. ${facts.join(" · ")}.`, "");

	const rows: string[] = [];
	const pathValues: Record<string, string> = {};
	const query: string[] = [];
	for (const p of op.parameters ?? []) {
		if (p.in === "header") continue;
		rows.push(`| \`${p.name}\` | ${p.in} | ${typeOf(p.schema)} | ${p.required ? "yes" : ""} | ${rules(p.schema)} |`);
		if (p.in === "path") pathValues[p.name] = String(example(p.schema, p.name));
		if (p.in === "query" && p.required) query.push(`${p.name}=${encodeURIComponent(String(example(p.schema, p.name)))}`);
	}
	const body = op.requestBody?.content?.["application/json"]?.schema;
	const required: string[] = body?.required ?? [];
	for (const [name, s] of Object.entries<any>(body?.properties ?? {})) {
		rows.push(`| \`${name}\` | body | ${typeOf(s)} | ${required.includes(name) ? "yes" : ""} | ${rules(s)} |`);
	}
	if (rows.length) lines.push("| field | in | type | required | rules |", "|---|---|---|---|---|", ...rows, "");

	const url = apiPath.replace(/:([A-Za-z0-9_]+)/g, (_m, n: string) => pathValues[n] ?? `<${n}>`) + (query.length ? `?${query.join("&")}` : "");
	const curl = [`curl -sS ${r.method === "GET" ? "" : `-X ${r.method} `}'http://localhost:3000${url}'`];
	if (r.access !== "public") curl.push(`-H "Authorization: Bearer $TOKEN"`);
	if (body && Object.keys(body.properties ?? {}).length) {
		curl.push(`-H 'Content-Type: application/json'`);
		if (r.method === "POST" && r.access !== "public") curl.push(`-H "Idempotency-Key: $(uuidgen)"`);
		curl.push(`-d ${shellQuote(JSON.stringify(example(body)))}`);
	}
	lines.push("```sh", curl.join(" \\\n  "), "```");
	return lines.join("\n");
}

/** The generated route reference of docs/api.md. */
export function apiReference(descriptions = paramDescriptions()): string {
	const doc = buildOpenApi(ROUTES, descriptions, { version: "docs" });
	const sections = sectionsOfRouteTable();
	const bySection = new Map<string, string[]>();
	for (const r of ROUTES) {
		const op = doc.paths[`/api${r.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`]?.[r.method.toLowerCase()];
		const title = sections.get(`${r.method} ${r.path}`) ?? "Other routes";
		bySection.set(title, [...(bySection.get(title) ?? []), routeReference(r, op ?? {})]);
	}
	const out: string[] = [];
	out.push("### Index", "", "| method, path | who | does |", "|---|---|---|");
	for (const r of [...GATEWAY_ROUTES, ...ROUTES]) out.push(`| \`${r.method} /api${r.path}\` | ${r.access} | ${r.summary} |`);
	out.push("");
	for (const [title, routes] of bySection) out.push(`### ${title}`, "", routes.join("\n\n"), "");
	out.push("### Served by the gateway itself", "");
	for (const r of GATEWAY_ROUTES) out.push(`#### \`${r.method} /api${r.path}\``, "", `${r.summary}. Who: ${WHO[r.access]}.`, "", "```sh", `curl -sS 'http://localhost:3000/api${r.path}'`, "```", "");
	return out.join("\n");
}

// --- docs/sagas.md: steps and state diagrams ------------------------------------------------

/** Every SagaDefinition exported by sagas/*.saga.ts. */
export function sagaDefinitions(): SagaDefinition<any>[] {
	const dir = path.join(ROOT, "sagas");
	const out: SagaDefinition<any>[] = [];
	for (const file of fs.readdirSync(dir).filter(f => f.endsWith(".saga.ts")).sort()) {
		// eslint-disable-next-line @typescript-eslint/no-require-imports
		const mod = require(path.join(dir, file));
		for (const value of Object.values(mod)) {
			if (value instanceof SagaDefinition && !out.includes(value)) out.push(value);
		}
	}
	return out;
}

/** A step with the DSL's optional features (a pivot, a wait for an outside event), whatever the engine's version. */
interface StepExtras {
	name: string;
	pivot?: boolean;
	await?: { event?: unknown; failOn?: unknown; deadlineMs?: unknown; when?: unknown };
	when?: unknown;
	retry?: { attempts: number; backoffMs: number };
	timeoutMs?: number;
	invoke: unknown;
	compensate?: unknown;
}

/** The name of an action or event: a plain string, or a typed reference `{ name }`. */
function refName(ref: unknown): string {
	if (typeof ref === "string") return ref;
	if (ref && typeof ref === "object" && typeof (ref as any).name === "string") return (ref as any).name;
	return String(ref);
}

function stepsOf(def: SagaDefinition<any>): ReadonlyArray<StepExtras> {
	return def.steps as unknown as ReadonlyArray<StepExtras>;
}

function pivotIndex(def: SagaDefinition<any>): number {
	return stepsOf(def).findIndex(s => s.pivot === true);
}

function failOnList(a: StepExtras["await"]): string[] {
	if (!a?.failOn) return [];
	return (Array.isArray(a.failOn) ? a.failOn : [a.failOn]).map(refName);
}

/** `authorizePayment` → `awaiting_authorize_payment`, as the engine names a waiting step's state. */
function waitingState(step: string): string {
	return compensationState(step).replace(/^compensating_/, "awaiting_");
}

export function sagaDiagram(def: SagaDefinition<any>): string {
	const steps = stepsOf(def);
	const pivot = pivotIndex(def);
	const lines = ["stateDiagram-v2"];
	const fwd = steps.map(s => forwardState(s.name));
	const undo = (i: number) => compensationState(steps[i]!.name);
	/** Where undoing starts when step i failed: the latest step up to i that can be undone. */
	const firstUndoFrom = (i: number) => {
		for (let j = i; j >= 0; j--) if (steps[j]!.compensate) return undo(j);
		return "compensated";
	};
	const canFail = (i: number) => pivot < 0 || i <= pivot;

	// Forward: each step, its wait if it has one, then the next (or around a conditional step).
	const entry = (i: number) => fwd[i] ?? "completed";
	lines.push(`    [*] --> ${entry(0)}`);
	if (steps[0]?.when) lines.push(`    [*] --> ${entry(1)}: skips ${steps[0].name}`);
	steps.forEach((s, i) => {
		const next = entry(i + 1);
		if (s.await) {
			const waiting = waitingState(s.name);
			lines.push(`    ${fwd[i]} --> ${waiting}: sent`);
			lines.push(`    ${waiting} --> ${next}: ${refName(s.await.event)}`);
			if (s.await.when) lines.push(`    ${fwd[i]} --> ${next}: answered at once`);
		} else {
			lines.push(`    ${fwd[i]} --> ${next}`);
		}
		if (steps[i + 1]?.when) lines.push(`    ${fwd[i]} --> ${entry(i + 2)}: skips ${steps[i + 1]!.name}`);
	});

	// Failures: before and at the pivot they turn the saga back; after it they retry, and a refusal parks.
	steps.forEach((s, i) => {
		if (canFail(i)) {
			// A step that failed may still have taken effect: its own compensation runs first.
			lines.push(`    ${fwd[i]} --> ${firstUndoFrom(i)}: refused or out of retries`);
			if (s.await) {
				const why = [...failOnList(s.await), "deadline"].join(" or ");
				lines.push(`    ${waitingState(s.name)} --> ${firstUndoFrom(i)}: ${why}`);
			}
		} else {
			lines.push(`    ${fwd[i]} --> parked: refused`);
		}
	});
	/** The latest step before i that can be undone, -1 when none. */
	const undoableBefore = (i: number) => {
		for (let j = i - 1; j >= 0; j--) if (steps[j]!.compensate) return j;
		return -1;
	};
	for (let i = steps.length - 1; i >= 0; i--) {
		if (!steps[i]!.compensate) continue;
		lines.push(`    ${undo(i)} --> ${i > 0 ? firstUndoFrom(i - 1) : "compensated"}`);
		// A conditional step that did not run was never sent: undoing goes past it.
		for (let j = undoableBefore(i); j >= 0 && steps[j]!.when; ) {
			const k = undoableBefore(j);
			lines.push(`    ${undo(i)} --> ${k >= 0 ? undo(k) : "compensated"}: ${steps[j]!.name} was skipped`);
			j = k;
		}
		lines.push(`    ${undo(i)} --> parked: cannot be undone`);
	}

	steps.forEach((s, i) => {
		const notes: string[] = [];
		if (i === pivot) notes.push("pivot — from here on the saga only moves forward");
		if (pivot >= 0 && i > pivot) notes.push("retried until it succeeds, never undone");
		if (s.when) notes.push("runs only when needed");
		if (notes.length) lines.push(`    note right of ${fwd[i]}: ${notes.join("; ")}`);
	});
	lines.push("    completed --> [*]", "    compensated --> [*]");
	if (lines.some(l => l.includes("--> parked"))) lines.push("    parked --> [*]: an operator retries or compensates");
	return lines.join("\n");
}

function sagaTable(def: SagaDefinition<any>): string {
	const steps = stepsOf(def);
	const pivot = pivotIndex(def);
	const rows = steps.map((s, i) => {
		const notes: string[] = [];
		if (i === pivot) notes.push("**pivot**");
		if (pivot >= 0 && i > pivot) notes.push("after the pivot: retried, never undone");
		if (s.await) notes.push(`then waits (\`${waitingState(s.name)}\`) for \`${refName(s.await.event)}\`${failOnList(s.await).length ? `; ${failOnList(s.await).map(e => `\`${e}\``).join(" / ")} or its deadline undoes it` : "; its deadline undoes it"}${s.await.when ? "; only when the answer says so" : ""}`);
		if (s.when) notes.push("conditional");
		if (s.retry) notes.push(`${s.retry.attempts} attempts from ${s.retry.backoffMs} ms`);
		if (s.timeoutMs) notes.push(`timeout ${s.timeoutMs} ms`);
		return `| ${s.name} | \`${forwardState(s.name)}\` | \`${refName(s.invoke)}\` | ${s.compensate ? `\`${refName(s.compensate)}\`` : "—"} | ${notes.join("; ")} |`;
	});
	return ["| step | state | invokes | compensation | notes |", "|---|---|---|---|---|", ...rows].join("\n");
}

export function sagaReference(defs = sagaDefinitions()): string {
	return defs
		.map(def => [`### ${def.name}`, "", sagaTable(def), "", "```mermaid", sagaDiagram(def), "```"].join("\n"))
		.join("\n\n");
}

// --- docs/events.md: the event catalogue ----------------------------------------------------

function fields(schema: any): string {
	const json = parse(schema, "json") as any;
	const required: string[] = json.required ?? [];
	return Object.keys(json.properties ?? {})
		.map(k => (required.includes(k) ? `\`${k}\`` : `\`${k}?\``))
		.join(", ");
}

export function eventReference(cons = consumers()): string {
	const groupsOf = (event: string) => [...new Set(cons.filter(c => c.event === event).map(c => c.group))].sort();
	const out = ["| event | emitted by | means | consuming queues | main payload fields (`?` optional) |", "|---|---|---|---|---|"];
	for (const name of Object.keys(EVENTS).sort() as EventName[]) {
		const spec = EVENTS[name];
		const queues = groupsOf(name).map(g => `\`${g}.${name}\``).join(", ") || "—";
		out.push(`| \`${name}\` | ${spec.by} | ${spec.summary} | ${queues} | ${fields(spec.payload)} |`);
	}
	out.push("", `Integration events (topic exchange \`${INTEGRATION_EXCHANGE}\`):`, "", "| routing key | from | payload fields |", "|---|---|---|");
	for (const name of Object.keys(INTEGRATION_EVENTS).sort() as IntegrationEventName[]) {
		out.push(`| \`${integrationRoutingKey(name)}\` | \`${INTEGRATION_EVENTS[name].from}\` | ${fields(INTEGRATION_EVENTS[name].payload)} |`);
	}
	return out.join("\n");
}

// --- The files ---------------------------------------------------------------------------

/** Every generated file with its new content. */
export function generate(): Record<string, string> {
	const services = loadServices();
	const read = (f: string) => fs.readFileSync(path.join(ROOT, f), "utf8");
	return {
		"docs/api.md": replaceRegion(read("docs/api.md"), "routes", apiReference(paramDescriptions(services)), "docs/api.md"),
		"docs/sagas.md": replaceRegion(read("docs/sagas.md"), "sagas", sagaReference(), "docs/sagas.md"),
		"docs/events.md": replaceRegion(read("docs/events.md"), "events", eventReference(consumers(services)), "docs/events.md")
	};
}

/** The generated files whose content on disk differs from what the code says. */
export function outdated(): string[] {
	return Object.entries(generate())
		.filter(([file, text]) => fs.readFileSync(path.join(ROOT, file), "utf8") !== text)
		.map(([file]) => file);
}

if (require.main === module) {
	const check = process.argv.includes("--check");
	const files = generate();
	let stale = 0;
	for (const [file, text] of Object.entries(files)) {
		const full = path.join(ROOT, file);
		if (fs.readFileSync(full, "utf8") === text) continue;
		stale++;
		if (check) console.log(`${file} is out of date: run npm run docs`);
		else {
			fs.writeFileSync(full, text);
			console.log(`wrote ${file}`);
		}
	}
	if (!stale) console.log("docs are current");
	process.exit(check && stale ? 1 : 0);
}
