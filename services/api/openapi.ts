/**
 * The OpenAPI 3 document of the gateway, generated from the route table (api/routes.ts) and the
 * joi descriptions of the actions' params that each service answers (`<service>.describeParams`):
 * the contract has one source, so the document cannot drift from the code.
 */
import parse from "joi-to-json";
import type { RouteDef } from "./routes";

type Descriptions = Record<string, unknown>;

const ERROR_RESPONSES: Record<string, string> = {
	"400": "Malformed request (e.g. the body is not JSON)",
	"401": "Missing, expired or invalid bearer token",
	"403": "The token's role may not do this",
	"404": "Not found (also another customer's resource)",
	"409": "Conflict with the current state; `type` says which (OUT_OF_STOCK, CART_LOCKED …)",
	"413": "Body larger than the limit",
	"422": "Validation failed; `data` lists each bad field",
	"429": "Rate limited; see Retry-After"
};

function toJsonSchema(description: unknown): any {
	if (!description) return { type: "object" };
	return parse({ describe: () => description } as any, "open-api");
}

function openApiPath(path: string): { path: string; params: string[] } {
	const params: string[] = [];
	const converted = path.replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) => {
		params.push(name);
		return `{${name}}`;
	});
	return { path: `/api${converted}`, params };
}

export function buildOpenApi(routes: RouteDef[], descriptions: Descriptions, info: { version: string }) {
	const paths: Record<string, any> = {};
	for (const r of routes) {
		const { path, params } = openApiPath(r.path);
		const schema = toJsonSchema(descriptions[r.action]);
		const properties: Record<string, any> = { ...(schema.properties ?? {}) };
		const required: string[] = [...(schema.required ?? [])];
		const parameters: any[] = params.map(name => {
			const actionParam = r.rename?.[name] ?? name;
			const p = { name, in: "path", required: true, schema: properties[actionParam] ?? { type: "string" } };
			delete properties[actionParam];
			return p;
		});
		for (const hidden of ["idempotencyKey"]) delete properties[hidden];
		const remaining = required.filter(k => k in properties);
		const op: any = {
			operationId: r.action.replace(".", "_"),
			summary: r.summary,
			tags: [r.action.split(".")[0]],
			parameters,
			responses: {
				[String(r.status ?? 200)]: { description: "Success", content: { "application/json": { schema: { type: "object" } } } },
				...Object.fromEntries(Object.keys(ERROR_RESPONSES).map(code => [code, { $ref: `#/components/responses/E${code}` }]))
			}
		};
		if (r.access === "cart") op.security = [{ bearer: [] }, { guestToken: [] }];
		else if (r.access !== "public") op.security = [{ bearer: [] }];
		if (r.method === "GET" || r.method === "DELETE") {
			for (const [name, s] of Object.entries(properties)) parameters.push({ name, in: "query", required: remaining.includes(name), schema: s });
		} else {
			op.requestBody = {
				required: remaining.length > 0,
				content: { "application/json": { schema: { type: "object", properties, ...(remaining.length ? { required: remaining } : {}), additionalProperties: false } } }
			};
			op.parameters.push({ name: "Idempotency-Key", in: "header", required: false, schema: { type: "string", maxLength: 200 } });
		}
		paths[path] ??= {};
		paths[path][r.method.toLowerCase()] = op;
	}
	return {
		openapi: "3.0.3",
		info: { title: "saga-commerce storefront API", version: info.version, description: "Generated from the gateway's route table and the services' joi schemas." },
		servers: [{ url: "/" }],
		paths,
		components: {
			securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" }, guestToken: { type: "apiKey", in: "header", name: "X-Guest-Token" } },
			schemas: {
				Error: {
					type: "object",
					required: ["name", "message", "code", "type"],
					properties: { name: { type: "string" }, message: { type: "string" }, code: { type: "integer" }, type: { type: "string" }, data: {} }
				}
			},
			responses: Object.fromEntries(
				Object.entries(ERROR_RESPONSES).map(([code, description]) => [`E${code}`, { description, content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } }])
			)
		}
	};
}
