import Joi from "joi";

/** Money is integer minor units plus an ISO 4217 currency, never a float. */
export interface Money {
	amount: number;
	currency: string;
}

export const CURRENCIES = ["PLN", "EUR", "USD", "GBP"] as const;

export const moneySchema = Joi.object({
	amount: Joi.number().integer().min(0).max(100_000_000_00).required(),
	currency: Joi.string().valid(...CURRENCIES).required()
});

export function money(amount: number, currency: string): Money {
	if (!Number.isSafeInteger(amount)) throw new Error(`money amount must be an integer, got ${amount}`);
	return { amount, currency };
}

export function multiply(m: Money, quantity: number): Money {
	return money(m.amount * quantity, m.currency);
}

/** Sum of amounts; every amount must be in the same currency. */
export function sum(items: Money[], currency: string): Money {
	let total = 0;
	for (const m of items) {
		if (m.currency !== currency) throw new Error(`cannot add ${m.currency} to ${currency}`);
		total += m.amount;
	}
	return money(total, currency);
}
