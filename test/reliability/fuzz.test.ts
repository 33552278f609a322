/**
 * 10,000 generated malformed requests over every operation of the gateway's OpenAPI document
 * (fast-check): wrong types, missing and unknown fields, huge strings, deep nesting, NUL
 * characters, bytes that are not UTF-8, bad path parameters, bad bearer tokens, bodies that are
 * not objects — each as an anonymous caller, a customer and an admin. Every request carries at
 * least one defect, so every answer must be a refusal: no status ≥ 500, no write accepted, and
 * no row of any table of any schema changed (a checksum of each table before and after).
 *
 * FUZZ_RUNS (default 10000), FUZZ_SEED (default: random, printed) and FUZZ_CONCURRENCY tune it.
 */
import { expect } from "chai";
import { writeReliabilityFigures } from "../support/reliability-doc";
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import fc from "fast-check";
import jwt from "jsonwebtoken";
import knexFactory, { Knex } from "knex";
import { SERVICE_NAMES } from "../../services";
import { Cluster, startCluster } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { adminLogin, productInStock, verifiedCustomer } from "../support/shop";
import { snapshotTables } from "../support/tables";

const ALL_BUT_API = SERVICE_NAMES.filter(name => name !== "api");
const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000);
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const CONCURRENCY = Number(process.env.FUZZ_CONCURRENCY ?? 16);

type Role = "anonymous" | "customer" | "admin";

interface Operation {
	method: string;
	/** OpenAPI path, e.g. /api/orders/{id} */
	path: string;
	pathParams: Array<{ name: string; schema: any }>;
	query: Array<{ name: string; schema: any; required: boolean }>;
	body?: { properties: Record<string, any>; required: string[] };
	secured: boolean;
}

interface Generated {
	op: Operation;
	role: Role;
	defect: string;
	/** A path parameter, query and body, before the defect is applied. */
	pathValues: Record<string, string>;
	query: Record<string, unknown>;
	body: unknown;
	/** Set by some defects: exact bytes for the body, or a raw query string, or a token. */
	rawBody?: Uint8Array;
	rawQuery?: string;
	rawPath?: Record<string, string>;
	token?: string;
	headers?: Record<string, string>;
}

function operationsOf(doc: any): Operation[] {
	const ops: Operation[] = [];
	for (const [path, methods] of Object.entries<any>(doc.paths)) {
		for (const [method, op] of Object.entries<any>(methods)) {
			if (!op.operationId) continue; // health and the document itself are not in the table
			const params: any[] = op.parameters ?? [];
			const schema = op.requestBody?.content?.["application/json"]?.schema;
			ops.push({
				method: method.toUpperCase(),
				path,
				pathParams: params.filter(p => p.in === "path").map(p => ({ name: p.name, schema: p.schema })),
				query: params.filter(p => p.in === "query").map(p => ({ name: p.name, schema: p.schema, required: !!p.required })),
				body: schema ? { properties: schema.properties ?? {}, required: schema.required ?? [] } : undefined,
				secured: !!op.security
			});
		}
	}
	return ops;
}

/** A value the schema accepts, as far as a generator can tell (the defect is added afterwards). */
function plausible(schema: any = {}): unknown {
	if (schema.enum?.length) return schema.enum[0];
	switch (schema.type) {
		case "integer":
		case "number":
			return schema.minimum ?? 1;
		case "boolean":
			return true;
		case "array":
			return [];
		case "object": {
			const out: Record<string, unknown> = {};
			for (const k of schema.required ?? []) out[k] = plausible(schema.properties?.[k]);
			return out;
		}
		default:
			if (schema.format === "uuid" || schema.format === "guid") return randomUUID();
			if (schema.format === "email") return `fuzz-${randomUUID().slice(0, 8)}@example.com`;
			return "x".repeat(Math.max(1, schema.minLength ?? 1));
	}
}

const HOSTILE_STRINGS = [
	"",
	" ",
	"\u0000",
	"a\u0000b",
	"\ud800",
	"x\udfffy",
	"'; DROP TABLE orders; --",
	'" OR 1=1 --',
	"../../etc/passwd",
	"${7*7}",
	"<script>alert(1)</script>",
	"%00",
	"null",
	"NaN",
	"-1",
	"1e309",
	"\u202e\u0301",
	"ø".repeat(3000)
];

/** Values of the wrong type or shape for a field of `schema`. */
function wrongValues(schema: any = {}): fc.Arbitrary<unknown> {
	const shapes: fc.Arbitrary<unknown>[] = [fc.constant({ $gt: "" }), fc.constant([[[]]])];
	// Text is the wrong type for anything but a text field (where it may be perfectly fine).
	const texts = fc.constantFrom(...HOSTILE_STRINGS);
	switch (schema.type) {
		case "integer":
		case "number":
			return fc.oneof(...shapes, texts, fc.constantFrom("seven", 1.5, -1, -(2 ** 53), 1e308, 2 ** 63, "0x10", true), fc.double({ noNaN: true }).filter(d => !Number.isInteger(d)));
		case "boolean":
			return fc.oneof(...shapes, texts, fc.constantFrom("maybe", 2, "yes"));
		case "array":
			return fc.oneof(...shapes, texts, fc.constantFrom("not an array", 7), fc.constant(Array.from({ length: 2000 }, () => ({}))), fc.array(fc.anything(), { maxLength: 5 }).map(a => [...a, { $where: 1 }]));
		case "object":
			return fc.oneof(...shapes, texts, fc.constantFrom("not an object", 3, true), fc.constant({ unknownField: "x" }));
		default:
			return fc.oneof(
				...shapes,
				fc.constantFrom(12345, true, { a: 1 }, ["x"], "\u0000", "a\ud800", "x\udfffy"),
				fc.constant("x".repeat(70_000)),
				fc.string({ unit: "binary", minLength: 1, maxLength: 40 }).map(s => `${s}\u0000`)
			);
	}
}

const INVALID_UTF8: Uint8Array[] = [Buffer.from([0xff]), Buffer.from([0xc3, 0x28]), Buffer.from([0xe2, 0x82]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80])];
const BAD_PERCENT = ["%FF", "%C3%28", "%E2%82", "%ED%A0%80", "%C0%AF", "%00", "%", "%G1"];

function badTokens(customer: { id: string; email: string; token: string }): string[] {
	const secret = process.env.JWT_SECRET!;
	const [h, p, s] = customer.token.split(".");
	const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
	const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
	return [
		"garbage",
		"",
		"a.b.c",
		"Bearer",
		jwt.sign({ sub: customer.id, role: "customer" }, secret, { expiresIn: -10 }),
		jwt.sign({ sub: customer.id, role: "admin" }, "another-key"),
		jwt.sign({ sub: customer.id, role: "superuser" }, secret),
		jwt.sign({ sub: 42, role: "admin" }, secret),
		jwt.sign({ role: "admin" }, secret),
		[h, b64({ ...claims, role: "admin" }), s].join("."),
		[b64({ alg: "none", typ: "JWT" }), b64({ ...claims, role: "admin" }), ""].join("."),
		[b64({ alg: "HS512", typ: "JWT" }), p, s].join("."),
		"x".repeat(10_000)
	];
}

/** A nested value `depth` levels deep, objects or arrays. */
function nested(depth: number, arrays: boolean): string {
	return arrays ? "[".repeat(depth) + "]".repeat(depth) : '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
}

function requestArbitrary(ops: Operation[], tokens: string[]): fc.Arbitrary<Generated> {
	return fc
		.record({
			op: fc.constantFrom(...ops),
			role: fc.constantFrom<Role>("anonymous", "customer", "admin"),
			pick: fc.nat(),
			pick2: fc.nat(),
			defect: fc.constantFrom("wrongType", "missingField", "unknownField", "hugeString", "deepNesting", "nul", "invalidUtf8", "badPath", "badToken", "notAnObject", "malformedJson", "badQuery", "hugeBody", "badHeader"),
			value: fc.anything({ maxDepth: 2 }),
			depth: fc.oneof(fc.integer({ min: 33, max: 200 }), fc.integer({ min: 1000, max: 6000 })),
			arrays: fc.boolean()
		})
		.chain(({ op, role, pick, pick2, defect, value, depth, arrays }) => {
			const g: Generated = {
				op,
				role,
				defect,
				pathValues: Object.fromEntries(op.pathParams.map(p => [p.name, String(plausible(p.schema) ?? randomUUID())])),
				query: Object.fromEntries(op.query.filter(q => q.required).map(q => [q.name, plausible(q.schema)])),
				body: op.body ? plausible({ type: "object", properties: op.body.properties, required: op.body.required }) : undefined
			};
			const fields = op.body ? Object.keys(op.body.properties) : op.query.map(q => q.name);
			const field = fields.length ? fields[pick % fields.length]! : undefined;
			const schemaOf = (f: string) => (op.body ? op.body.properties[f] : op.query.find(q => q.name === f)?.schema);
			const put = (v: unknown) => {
				if (op.body) (g.body as Record<string, unknown>)[field ?? "unknownField"] = v;
				else g.query[field ?? "unknownField"] = v;
			};
			switch (defect) {
				case "wrongType":
					if (!field) {
						put(value ?? 1); // nothing to get wrong: an unknown field instead
						break;
					}
					// In a query string every value is text: only a text the field refuses is wrong there.
					if (!op.body && (schemaOf(field)?.type ?? "string") === "string") return fc.constantFrom("\u0000", "x".repeat(6000), "a\ud800").map(v => (put(v), g));
					return wrongValues(schemaOf(field)).map(v => (put(v), g));
				case "missingField": {
					const required = op.body ? op.body.required : op.query.filter(q => q.required).map(q => q.name);
					if (required.length) {
						const target = op.body ? (g.body as Record<string, unknown>) : g.query;
						delete target[required[pick2 % required.length]!];
						// A body with nothing required missing still gets an unknown field below.
						if (op.body && Object.keys(g.body as object).length === 0) (g.body as Record<string, unknown>).unknownField = value ?? 1;
						return fc.constant(g);
					}
					// Nothing required to leave out: an unknown field instead (never `undefined`, which JSON would drop, leaving a valid request).
					put(value ?? 1);
					(op.body ? (g.body as Record<string, unknown>) : g.query).unknownField = value ?? 1;
					break;
				}
				case "unknownField":
					(op.body ? (g.body as Record<string, unknown>) : g.query)[`x${pick % 1000}`] = value ?? 1;
					break;
				case "hugeString":
					put("x".repeat(op.body ? 20_000 + (pick % 40_000) : 3_000 + (pick % 3_000)));
					if (!field) g.query.unknownField = "x";
					break;
				case "deepNesting":
					if (op.body) {
						// Last, so it wins over a plausible value of the same field (JSON.parse keeps the last key).
						const rest = JSON.stringify(g.body).slice(0, -1);
						const json = `${rest}${rest.length > 1 ? "," : ""}"${field ?? "a"}":${nested(depth, arrays)}}`;
						g.rawBody = Buffer.from(json);
					} else g.rawQuery = `${field ?? "a"}${"[a]".repeat(Math.min(depth, 300))}=1`;
					break;
				case "nul":
					return fc.constantFrom("\u0000", "a\u0000", "\u0000\u0000x").map(nul => {
						if (op.pathParams.length && pick2 % 3 === 0) g.rawPath = { [op.pathParams[0]!.name]: pct(nul) };
						else if (op.body && pick2 % 3 === 1) (g.body as Record<string, unknown>)[`k${nul}`] = "x";
						else put(nul);
						if (!field && !op.body && !g.rawPath) g.query.q = nul;
						return g;
					});
				case "invalidUtf8": {
					const bytes = INVALID_UTF8[pick % INVALID_UTF8.length]!;
					const percent = BAD_PERCENT[pick % (BAD_PERCENT.length - 3)]!; // the first five are bad UTF-8
					if (op.body && pick2 % 3 === 0) {
						const json = Buffer.from(JSON.stringify({ ...(g.body as object), [field ?? "a"]: "@@" }));
						const at = json.indexOf("@@");
						g.rawBody = Buffer.concat([json.subarray(0, at), bytes, json.subarray(at + 2)]);
					} else if (op.pathParams.length && pick2 % 3 === 1) g.rawPath = { [op.pathParams[0]!.name]: `a${percent}` };
					else g.rawQuery = `${pct(field ?? "q")}=${percent}`;
					break;
				}
				case "badPath":
					if (!op.pathParams.length) {
						g.query.unknownField = value ?? 1;
						break;
					}
					return fc
						.constantFrom("not-a-uuid", "1", "-1", "0", "00000000-0000-0000-0000-00000000000g", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%27%20OR%201%3D1", "x".repeat(3000), "%20", pct(HOSTILE_STRINGS[pick % HOSTILE_STRINGS.length]!) || "%20")
						.map(bad => ((g.rawPath = { [op.pathParams[pick2 % op.pathParams.length]!.name]: bad }), g));
				case "badToken":
					g.token = tokens[pick % tokens.length]!;
					break;
				case "notAnObject":
					if (!op.body) {
						g.rawQuery = `${field ?? "q"}[]=1&${field ?? "q"}[x]=2`;
						break;
					}
					return fc.constantFrom("[]", "[1,2]", '"a string"', "42", "null", "true", "[{}]").map(raw => ((g.rawBody = Buffer.from(raw)), g));
				case "malformedJson":
					if (!op.body) {
						g.query.unknownField = "x";
						break;
					}
					return fc.constantFrom('{"a":', "{'a':1}", '{"a":1,}', "{a:1}", '{"a":01}', '{"a":"\\x00"}', '{"a":"\\ud800"}', "\u0000", '{"a":1}garbage').map(raw => ((g.rawBody = Buffer.from(raw)), g));
				case "badQuery":
					g.rawQuery = [`page=${pick % 2 ? "-1" : "abc"}`, `pageSize=${pick2 % 2 ? "1e9" : "0"}`, `unknown${pick % 50}=1`, `${field ?? "q"}=${"y".repeat(6000)}`][pick2 % 4]!;
					break;
				case "hugeBody":
					if (!op.body) {
						g.rawQuery = `q=${"z".repeat(70_000)}`; // a URL longer than the server allows
						break;
					}
					g.rawBody = Buffer.from(JSON.stringify({ ...(g.body as object), [field ?? "a"]: "h".repeat(70_000 + (pick % 100_000)) }));
					break;
				case "badHeader":
					g.headers = pick2 % 2 ? { "idempotency-key": "k".repeat(201 + (pick % 100)) } : { "idempotency-key": "" , "content-type": "application/json; charset=latin1" };
					(op.body ? (g.body as Record<string, unknown>) : g.query).unknownField = 1;
					break;
			}
			return fc.constant(g);
		});
}

/** Percent-encoding that also carries a lone surrogate (as the 3 bytes WTF-8 would give it: not UTF-8). */
function pct(s: string): string {
	return Array.from(s)
		.map(ch => {
			const cp = ch.codePointAt(0)!;
			if (cp < 0xd800 || cp > 0xdfff) return encodeURIComponent(ch);
			return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)].map(b => `%${b.toString(16).toUpperCase()}`).join("");
		})
		.join("");
}

function encodeQuery(query: Record<string, unknown>): string {
	return Object.entries(query)
		.map(([k, v]) => `${pct(k)}=${pct(typeof v === "string" ? v : JSON.stringify(v) ?? "")}`)
		.join("&");
}

describe("fuzzing the gateway with malformed requests", function () {
	this.timeout(600_000);
	let cluster: Cluster;
	let http: Http;
	let base: string;
	let db: Knex;
	let admin: string;
	let customer: Awaited<ReturnType<typeof verifiedCustomer>>;

	before(async () => {
		cluster = await startCluster([["api"], ALL_BUT_API]);
		base = `http://127.0.0.1:${((cluster.brokers[0]!.getLocalService("api") as any).server.address() as AddressInfo).port}`;
		http = new Http(base);
		admin = await adminLogin(http);
		customer = await verifiedCustomer(http, admin);
		// Something to point at: a product in the customer's cart.
		const p = await productInStock(http, admin, { stock: 5 });
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, customer.token), 200);
		db = knexFactory({ client: "pg", connection: process.env.DATABASE_URL });
	});
	after(async () => {
		await cluster?.stop();
		await db?.destroy();
	});

	it(`${RUNS} generated malformed requests over every OpenAPI operation: none answered ≥ 500, none accepted, no row changed`, async () => {
		const doc = expectStatus(await http.get("/api/openapi.json"), 200);
		const ops = operationsOf(doc);
		expect(ops.length).to.be.greaterThan(30);
		const samples = fc.sample(requestArbitrary(ops, badTokens(customer)), { numRuns: RUNS, seed: SEED });

		await new Promise(r => setTimeout(r, 1500)); // the outbox relays settle
		const before = await snapshotTables(db);

		// fetch keeps connections alive: CONCURRENCY workers reuse CONCURRENCY connections.
		const statuses: Record<string, number> = {};
		const byDefect: Record<string, Record<string, number>> = {};
		const millis: Record<string, number> = {};
		const failures: string[] = [];
		const accepted: string[] = [];
		const started = Date.now();
		let next = 0;

		const send = async (g: Generated) => {
			let path = g.op.path;
			for (const p of g.op.pathParams) path = path.replace(`{${p.name}}`, g.rawPath?.[p.name] ?? pct(g.pathValues[p.name]!));
			const query = g.rawQuery ?? encodeQuery(g.query);
			const url = `${base}${path}${query ? `?${query}` : ""}`;
			const headers: Record<string, string> = { ...g.headers };
			const token = g.token ?? (g.role === "admin" ? admin : g.role === "customer" ? customer.token : undefined);
			if (token !== undefined) headers.authorization = `Bearer ${token}`;
			let body: Uint8Array | string | undefined;
			if (g.rawBody) body = g.rawBody;
			else if (g.body !== undefined && g.op.method !== "GET") body = JSON.stringify(g.body);
			if (body !== undefined) headers["content-type"] ??= "application/json";
			const what = () => `${g.defect} ${g.role} ${g.op.method} ${url.slice(base.length, base.length + 120)} ${String(body ?? "").slice(0, 120)}`;
			let status: number;
			let text = "";
			const t0 = Date.now();
			try {
				const res = await fetch(url, { method: g.op.method, headers, body } as RequestInit);
				status = res.status;
				text = await res.text();
			} catch (err: any) {
				// The client itself refused to send it (e.g. a header it cannot encode): not an answer.
				status = 0;
				text = String(err?.cause?.code ?? err?.message);
			}
			millis[g.defect] = (millis[g.defect] ?? 0) + (Date.now() - t0);
			const key = String(status);
			statuses[key] = (statuses[key] ?? 0) + 1;
			(byDefect[g.defect] ??= {})[key] = (byDefect[g.defect]![key] ?? 0) + 1;
			if (status >= 500 || status === 0) failures.push(`${status} ← ${what()} → ${text.slice(0, 200)}`);
			else if (status < 400) accepted.push(`${status} ← ${what()} → ${text.slice(0, 120)}`);
		};

		await Promise.all(
			Array.from({ length: CONCURRENCY }, async () => {
				while (next < samples.length) await send(samples[next++]!);
			})
		);
		const seconds = (Date.now() - started) / 1000;
		await new Promise(r => setTimeout(r, 1500));
		const after = await snapshotTables(db);

		console.log(`      fuzz: ${samples.length} requests over ${ops.length} operations in ${seconds.toFixed(1)} s (${(samples.length / seconds).toFixed(0)}/s, concurrency ${CONCURRENCY}, seed ${SEED})`);
		console.log(`      statuses: ${JSON.stringify(Object.fromEntries(Object.entries(statuses).sort()))}`);
		for (const [defect, h] of Object.entries(byDefect).sort()) {
			const n = Object.values(h).reduce((a, b) => a + b, 0);
			console.log(`        ${defect.padEnd(14)} ${String(n).padStart(5)} × mean ${(millis[defect]! / n).toFixed(0).padStart(4)} ms ${JSON.stringify(h)}`);
		}
		for (const f of failures.slice(0, 20)) console.log(`      FAILURE ${f}`);
		for (const a of accepted.slice(0, 20)) console.log(`      ACCEPTED ${a}`);

		expect(samples.length).to.equal(RUNS);
		expect(failures, "answers ≥ 500 (or no answer)").to.deep.equal([]);
		expect(accepted, "malformed requests that were accepted").to.deep.equal([]);
		const changed = Object.keys(after).filter(t => after[t] !== before[t]);
		expect(changed, "tables whose rows changed").to.deep.equal([]);
		expect(Object.keys(before).length).to.be.greaterThan(20);
		writeReliabilityFigures(
			"fuzz",
			`Last run (${new Date().toISOString().slice(0, 10)}, seed ${SEED}): **${samples.length.toLocaleString("en")} requests over ${ops.length} operations in ` +
				`${seconds.toFixed(0)} s; ${failures.length} answers ≥ 500, ${accepted.length} accepted, ${changed.length} of ${Object.keys(before).length} tables changed.** ` +
				`Statuses: ${Object.entries(statuses).sort().map(([k, n]) => `${k} × ${n.toLocaleString("en")}`).join(", ")}.`
		);
	});
});
