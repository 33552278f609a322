/**
 * The documents stay true to the code and readable from a clone of the repository alone:
 * nothing points outside it, docs/api.md covers exactly the route table, the generated parts of
 * docs/ are current (`npm run docs`), every environment variable is read in the settings module
 * and listed in the README, and the AsyncAPI document is valid and names every event the code
 * records or consumes.
 */
import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";
import { Parser } from "@asyncapi/parser";
import { consumers, outdated, sagaDefinitions, sagaDiagram } from "../../bin/docs";
import { EVENTS, INTEGRATION_EVENTS, integrationRoutingKey } from "../../contracts/events";
import { compensationState, SagaDefinition } from "../../sagas/definition";
import { buildAsyncApi } from "../../services/api/asyncapi";
import { GATEWAY_ROUTES, ROUTES } from "../../services/api/routes";

const root = path.join(__dirname, "..", "..");

/** Every source and document file of the repository (not node_modules, data, or git's files). */
function repositoryFiles(): string[] {
	const out: string[] = [];
	const skip = new Set(["node_modules", "data", ".git", "coverage"]);
	const walk = (dir: string) => {
		for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
			const rel = dir ? `${dir}/${entry.name}` : entry.name;
			if (skip.has(entry.name)) continue;
			if (entry.isDirectory()) walk(rel);
			else if (/\.(ts|js|mjs|md|json|ya?ml|sql|sh)$|^Dockerfile$|^run$/.test(entry.name) && entry.name !== "package-lock.json") out.push(rel);
		}
	};
	for (const dir of ["README.md", "docs", "services", "sagas", "infra", "mixins", "contracts", "migrations", "bin", "bench", "test", "moleculer.config.ts", "Dockerfile", "docker-compose.yml", ".ci"]) {
		const full = path.join(root, dir);
		if (!fs.existsSync(full)) continue;
		if (fs.statSync(full).isDirectory()) walk(dir);
		else out.push(dir);
	}
	return out;
}

const read = (file: string) => fs.readFileSync(path.join(root, file), "utf8");

/** The production code: what runs in a shop (tests and the benchmark set up their own environment). */
function codeFiles(): string[] {
	return repositoryFiles().filter(f => /\.ts$/.test(f) && !f.startsWith("test/") && !f.startsWith("bench/"));
}

describe("documents", () => {
	describe("nothing points outside the repository", () => {
		// Built from parts so that this file does not match its own patterns.
		const md = "." + "md";
		const pointers: Array<[RegExp, string]> = [
			[new RegExp(`\\b(API|EVENTS|ARCHITECTURE|STYLE|CONTRACT-[A-Z]+)\\${md}\\b`), "a brief's document"],
			[new RegExp(["\\.\\.", "shared"].join("/")), "a folder beside the repository"],
			[new RegExp(["/work", "(shared|plan)"].join("/")), "a folder of the build machine"],
			[new RegExp(`\\bseeds?\\s?${"0"}\\d\\d\\b`, "i"), "a numbered seed"],
			[new RegExp(`\\bseeds${"/"}`), "the seeds folder"],
			[new RegExp(`\\b(CMD|EVT|INT)${"-"}[A-Z]{2,}`), "a seed's command or event code"]
		];

		it("no README, docs/, code comment or test name names a document the reader does not have", () => {
			const found: string[] = [];
			for (const file of repositoryFiles()) {
				read(file)
					.split("\n")
					.forEach((line, i) => {
						for (const [pattern, what] of pointers) if (pattern.test(line)) found.push(`${file}:${i + 1}: ${what}: ${line.trim().slice(0, 120)}`);
					});
			}
			expect(found, `say it in our own words instead:\n${found.join("\n")}`).to.deep.equal([]);
		});

		it("the check itself sees such a pointer", () => {
			const line = ["See ../", "shared/", "API", md, " and seed ", "004 ", "CMD", "-CART-001"].join("");
			expect(pointers.filter(([p]) => p.test(line)).length).to.be.greaterThan(2);
		});

		it("every relative link in README.md and docs/ leads to a file of the repository", () => {
			const broken: string[] = [];
			for (const file of repositoryFiles().filter(f => f.endsWith(".md") && (f === "README.md" || f.startsWith("docs/")))) {
				for (const m of read(file).matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
					const target = m[1]!;
					if (/^[a-z]+:/.test(target)) continue;
					if (!fs.existsSync(path.join(root, path.dirname(file), target))) broken.push(`${file} → ${target}`);
				}
			}
			expect(broken).to.deep.equal([]);
		});
	});

	describe("docs/api.md", () => {
		const doc = read("docs/api.md");
		const documented = [...doc.matchAll(/^#### `([A-Z]+) \/api(\/[^`]*)`$/gm)].map(m => `${m[1]} ${m[2]}`);
		const table = [...GATEWAY_ROUTES, ...ROUTES].map(r => `${r.method} ${r.path}`);

		it("describes every route of the route table", () => {
			expect(table.filter(r => !documented.includes(r)), "routes missing from docs/api.md: run npm run docs").to.deep.equal([]);
		});

		it("describes no route the gateway does not have", () => {
			expect(documented.filter(r => !table.includes(r)), "routes in docs/api.md that the route table lacks").to.deep.equal([]);
		});

		it("explains what every route has in common", () => {
			for (const heading of ["Authentication and roles", "Guests", "Errors", "Idempotency", "Money", "Lists and paging", "Correlation ids"]) {
				expect(doc, heading).to.match(new RegExp(`^## ${heading}$`, "m"));
			}
		});
	});

	describe("generated parts", () => {
		it("the route reference, the saga diagrams and the event table are current (npm run docs)", function () {
			this.timeout(30_000);
			expect(outdated(), "out of date: run npm run docs").to.deep.equal([]);
		});

		it("every saga definition has its diagram, one state per step, compensations in reverse", () => {
			const sagas = sagaDefinitions();
			expect(sagas.map(s => s.name)).to.include("place-order");
			const text = read("docs/sagas.md");
			for (const def of sagas) {
				const diagram = sagaDiagram(def);
				expect(text).to.include(diagram);
				expect(diagram).to.include("[*] --> ");
				for (const step of def.steps) expect(text).to.include(`| ${step.name} |`);
			}
			// place-order undoes its steps in reverse: each compensation leads to the one of the step before.
			const placeOrder = sagas.find(s => s.name === "place-order")!;
			const undone = placeOrder.steps.filter(s => s.compensate).map(s => compensationState(s.name)).reverse();
			expect(undone.length).to.be.greaterThan(2);
			const diagram = sagaDiagram(placeOrder);
			for (let i = 0; i + 1 < undone.length; i++) expect(diagram).to.include(`${undone[i]} --> ${undone[i + 1]}\n`);
			expect(diagram).to.include(`${undone[undone.length - 1]} --> compensated`);
		});
	});

	describe("saga diagrams", () => {
		const ref = (name: string) => ({ kind: "action", name });
		const evt = (name: string) => ({ kind: "event", name });
		// Built from raw steps, as the DSL stores them: a wait for an outside event, a pivot, a conditional step.
		const demo = new SagaDefinition<any>("demo", [
			{ name: "reserveStock", invoke: ref("inventory.reserve"), params: () => ({}), compensate: ref("inventory.release"), pivot: false },
			{ name: "redeemPromotion", invoke: ref("promotions.redeem"), params: () => ({}), compensate: ref("promotions.release"), when: () => true, pivot: false },
			{
				name: "authorizePayment", invoke: ref("payments.authorize"), params: () => ({}), compensate: ref("payments.void"), pivot: false,
				await: { event: evt("payment.authorized"), failOn: [evt("payment.failed")], key: () => "k", deadlineMs: () => 1000, when: () => true }
			},
			{ name: "confirmOrder", invoke: ref("orders.confirm"), params: () => ({}), pivot: true },
			{ name: "checkOutCart", invoke: ref("carts.checkout"), params: () => ({}), pivot: false, retriable: true }
		] as any);
		const diagram = sagaDiagram(demo);

		it("draws a waiting step's wait, its success event, and its failure events or deadline leading to the compensations", () => {
			expect(diagram).to.include("authorizing_payment --> awaiting_authorize_payment: sent");
			expect(diagram).to.include("awaiting_authorize_payment --> confirming_order: payment.authorized");
			expect(diagram).to.include("awaiting_authorize_payment --> compensating_authorize_payment: payment.failed or deadline");
			expect(diagram).to.include("authorizing_payment --> confirming_order: answered at once");
		});

		it("draws the pivot: steps after it never turn back, a refusal parks", () => {
			expect(diagram).to.include("note right of confirming_order: pivot");
			expect(diagram).to.include("confirming_order --> compensating_authorize_payment");
			expect(diagram).to.not.match(/checking_out_cart --> compensating/);
			expect(diagram).to.include("checking_out_cart --> parked: refused");
		});

		it("draws a way around a conditional step, and the compensations in reverse", () => {
			expect(diagram).to.include("reserving_stock --> authorizing_payment: skips redeemPromotion");
			expect(diagram).to.include("compensating_authorize_payment --> compensating_redeem_promotion");
			expect(diagram).to.include("compensating_redeem_promotion --> compensating_reserve_stock");
			expect(diagram).to.include("compensating_reserve_stock --> compensated");
		});
	});

	describe("environment variables", () => {
		const settingsFile = codeFiles().find(f => /export function readSettings\b/.test(read(f)));

		it("are all read in one settings module", () => {
			expect(settingsFile, "a module exporting readSettings").to.be.a("string");
			const outside: string[] = [];
			for (const file of codeFiles()) {
				if (file === settingsFile) continue;
				read(file)
					.split("\n")
					.forEach((line, i) => {
						if (/process\.env\s*(\.|\[)|\benv\.[A-Z][A-Z0-9_]+/.test(line)) outside.push(`${file}:${i + 1}: ${line.trim()}`);
					});
			}
			expect(outside, `read these in ${settingsFile} instead`).to.deep.equal([]);
		});

		it("every variable the settings module reads is in the README's table", () => {
			const names = new Set([...read(settingsFile!).matchAll(/\benv\.([A-Z][A-Z0-9_]+)/g)].map(m => m[1]!));
			expect(names.size).to.be.greaterThan(10);
			const tableRows = read("README.md")
				.split("\n")
				.filter(l => l.startsWith("|"))
				.join("\n");
			const missing = [...names].filter(n => !tableRows.includes(`\`${n}\``));
			expect(missing, "add a row to the README's table").to.deep.equal([]);
			// And the other way: no row for a variable nothing reads any more.
			const listed = tableRows
				.split("\n")
				.flatMap(row => [...(row.split("|")[1] ?? "").matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map(m => m[1]!));
			expect(listed.length).to.be.greaterThan(10);
			expect(listed.filter(n => !names.has(n)), "README rows for variables the settings module does not read").to.deep.equal([]);
		});
	});

	describe("AsyncAPI", () => {
		const consumed = consumers();
		const doc: any = buildAsyncApi({ version: "0.0.0-test", consumers: consumed });

		it("is a valid AsyncAPI 3 document", async function () {
			this.timeout(30_000);
			const { document, diagnostics } = await new Parser().parse(JSON.stringify(doc));
			const errors = diagnostics.filter(d => d.severity === 0).map(d => `${d.path.join("/")}: ${d.message}`);
			expect(errors).to.deep.equal([]);
			expect(document, "parsed").to.not.equal(undefined);
			expect(document!.version()).to.match(/^3\./);
		});

		it("has every event with its exchange, its consuming queues, the envelope and its payload", () => {
			for (const name of Object.keys(EVENTS)) {
				const exchange = Object.values<any>(doc.channels).find(c => c.address === name);
				expect(exchange, name).to.not.equal(undefined);
				expect(exchange.bindings.amqp.exchange).to.include({ name, type: "fanout", durable: true });
				const message = Object.values<any>(doc.components.messages).find(m => m.name === name);
				expect(Object.keys(message.payload.properties)).to.include.members(["event_id", "event_name", "aggregate_id", "correlation_id", "causation_id", "occurred_at", "version", "payload"]);
				expect(message.payload.properties.payload.type).to.equal("object");
			}
			const placed = Object.values<any>(doc.components.messages).find(m => m.name === "order.placed");
			expect(Object.keys(placed.payload.properties.payload.properties)).to.include.members(["orderId", "orderNumber", "total", "lines"]);
			for (const { event, group } of consumed) {
				const queue = Object.values<any>(doc.channels).find(c => c.address === `${group}.${event}`);
				expect(queue, `${group}.${event}`).to.not.equal(undefined);
				expect(queue.bindings.amqp.is).to.equal("queue");
			}
			expect(consumed.map(c => `${c.group}.${c.event}`)).to.include("inventory.product.created");
		});

		it("has the integration topic exchange with a routing key per integration event", () => {
			const integration = doc.channels.integration;
			expect(integration.bindings.amqp.exchange).to.include({ name: "integration", type: "topic" });
			const keys = Object.values<any>(doc.operations).flatMap(o => o.bindings?.amqp?.cc ?? []);
			for (const name of Object.keys(INTEGRATION_EVENTS) as Array<keyof typeof INTEGRATION_EVENTS>) expect(keys).to.include(integrationRoutingKey(name));
			expect(keys).to.include("OrderPlacedNotification.v1");
		});

		it("is complete: every event the code records, publishes or consumes is in the catalogue, emitted by the service the catalogue names", () => {
			const problems: string[] = [];
			const catalogue = EVENTS as Record<string, { by: string }>;
			for (const file of codeFiles()) {
				const text = read(file);
				const owner = /^services\/([a-z-]+)(\.service\.ts|\/)/.exec(file)?.[1];
				for (const name of recordedEvents(text, "recordIntegration")) {
					if (!(name in INTEGRATION_EVENTS)) problems.push(`${file} records the integration event '${name}', which INTEGRATION_EVENTS in contracts/events.ts does not list`);
				}
				for (const name of recordedEvents(text)) {
					if (!catalogue[name]) problems.push(`${file} records '${name}', which contracts/events.ts does not list`);
					else if (owner && catalogue[name].by !== owner) problems.push(`${file} records '${name}', but contracts/events.ts says ${catalogue[name].by} emits it`);
				}
				for (const m of text.matchAll(/sendToChannel\(\s*"([a-z_]+\.[a-z_]+)"/g)) if (!catalogue[m[1]!]) problems.push(`${file} publishes '${m[1]}', which contracts/events.ts does not list`);
			}
			for (const { event, group } of consumed) if (!catalogue[event]) problems.push(`${group} consumes '${event}', which contracts/events.ts does not list`);
			expect(problems, "add a line to EVENTS in contracts/events.ts").to.deep.equal([]);
		});

		it("lists the same integration events as the module that publishes them, when there is one", () => {
			const publisher = path.join(root, "contracts", "integration.ts");
			if (!fs.existsSync(publisher)) return;
			// eslint-disable-next-line @typescript-eslint/no-require-imports
			const names: readonly string[] = require(publisher).INTEGRATION_NAMES ?? [];
			expect([...names].sort()).to.deep.equal(Object.keys(INTEGRATION_EVENTS).sort());
		});

		it("the completeness scan finds event names in computed record calls", () => {
			const sample = `await this.record(trx, alert === "low" ? "inventory.low_stock" : "inventory.out_of_stock", sku, { a: "x.y" }, cause);\nawait this.record(t, "order.placed", id, {});`;
			expect(recordedEvents(sample).sort()).to.deep.equal(["inventory.low_stock", "inventory.out_of_stock", "order.placed"]);
			expect(recordedEvents(`await this.recordIntegration(trx, "LowStockNotification", id, {}, cause);`, "recordIntegration")).to.deep.equal(["LowStockNotification"]);
		});
	});
});

/** The event names in the second argument of every `this.record(trx, name, …)` (or `recordIntegration`) call of a source text. */
function recordedEvents(text: string, method: "record" | "recordIntegration" = "record"): string[] {
	const names: string[] = [];
	const literal = method === "record" ? /["'`]([a-z_]+\.[a-z_]+)["'`]/g : /["'`]([A-Z][A-Za-z0-9]+)["'`]/g;
	for (const m of text.matchAll(new RegExp(`this\\.${method}\\(`, "g"))) {
		let depth = 0;
		let arg = 0;
		let nameArg = "";
		for (let i = m.index! + m[0].length; i < text.length; i++) {
			const c = text[i]!;
			if ("([{".includes(c)) depth++;
			else if (")]}".includes(c)) {
				if (depth === 0) break;
				depth--;
			} else if (c === "," && depth === 0) {
				if (++arg > 1) break;
				continue;
			}
			if (arg === 1) nameArg += c;
		}
		for (const s of nameArg.matchAll(literal)) names.push(s[1]!);
	}
	return names;
}
