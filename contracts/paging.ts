import Joi from "joi";

/** Lists: `?page=1&pageSize=20` → `{ rows, total, page, pageSize }`. Pages are bounded so an offset never overflows. */
export const MAX_PAGE = 10_000;
export const page = Joi.number().integer().min(1).max(MAX_PAGE).default(1);
export const pageSize = Joi.number().integer().min(1).max(100).default(20);
