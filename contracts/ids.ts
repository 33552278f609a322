import Joi from "joi";

/** An id as every service validates it: a UUID (any version; ours are v4, checkout's derived ones v5). */
export const uuid = Joi.string().guid();
