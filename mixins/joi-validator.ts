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
