/**
 * Plugs joi into the broker: every action's `params` is a joi schema. Unknown fields are
 * refused, values are converted (query strings to numbers), and a failure becomes a 422
 * VALIDATION_ERROR listing each bad field.
 */
import Joi from "joi";
import { Errors, Validators } from "moleculer";

export class JoiValidator extends Validators.Base {
	compile(schema: any) {
		const joiSchema: Joi.Schema = Joi.isSchema(schema) ? schema : Joi.object(schema);
		return ((params: any, opts?: { meta?: any }) => {
			const { error, value } = joiSchema.validate(params, { abortEarly: false, convert: true, stripUnknown: false });
			if (error) {
				return error.details.map(d => ({
					type: d.type,
					field: d.path.join("."),
					message: d.message.replace(/"/g, "'")
				}));
			}
			// The handler sees the converted and defaulted values.
			if (opts?.meta && typeof opts.meta === "object" && "params" in opts.meta) opts.meta.params = value;
			return true;
		}) as any;
	}

	validate(params: any, schema: any): boolean {
		const { error } = (schema as Joi.Schema).validate(params, { abortEarly: false });
		if (error) throw new Errors.ValidationError(error.message, "VALIDATION_ERROR", error.details);
		return true;
	}

	convertSchemaToMoleculer(schema: any) {
		// joi schemas are shown to the REPL and gateway as they are.
		return Joi.isSchema(schema) ? (schema as Joi.Schema).describe() : schema;
	}
}

/**
 * `{ field: "string, uuid, required" }` for each key of a joi object schema — also of the deep
 * copy Moleculer keeps in its registry, which is no longer a joi schema but has the same fields.
 */
export function paramSummary(params: any): Record<string, string> | null {
	const keys = params?.$_terms?.keys;
	if (!Array.isArray(keys)) return null;
	const out: Record<string, string> = {};
	for (const { key, schema } of keys) {
		const formats = (schema?._rules ?? []).map((r: any) => ({ guid: "uuid", email: "email", integer: "integer" })[r?.name as string]).filter(Boolean);
		out[key] = [schema?.type ?? "any", ...formats, schema?._flags?.presence === "required" ? "required" : "optional"].join(", ");
	}
	return out;
}

/**
 * Once a service started (its handlers already hold their compiled joi schemas), the registry's
 * copy of each action's `params` becomes a plain summary: the REPL's `actions` lists real field
 * names instead of joi's internals, and the INFO packets other nodes receive carry a few bytes
 * per field instead of the serialised joi object.
 */
export const ReadableParams = {
	name: "ReadableParams",
	async serviceStarted(this: any, service: any) {
		const broker = service.broker;
		broker.registry.actions.actions.forEach((list: any, name: string) => {
			if (!name.startsWith(`${service.fullName}.`)) return;
			for (const ep of list.endpoints) {
				const summary = ep.local ? paramSummary(ep.action?.params) : null;
				if (summary) ep.action.params = summary;
			}
		});
		broker.registry.localNodeInfoInvalidated = "seq";
	}
};
