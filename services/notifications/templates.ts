/**
 * Every message the shop sends, as plain functions of their data returning `{ subject, text }`.
 * The template's name is what the delivery log records (`email_verification`, `order_confirmed`).
 */
export interface Rendered {
	subject: string;
	text: string;
}

export interface MoneyLike {
	amount: number;
	currency: string;
}

/** 12999 PLN → "PLN 129.99" (the currency's own number of decimals). */
export function formatMoney(m: MoneyLike): string {
	let digits = 2;
	try {
		digits = new Intl.NumberFormat("en", { style: "currency", currency: m.currency }).resolvedOptions().maximumFractionDigits ?? 2;
	} catch {
		/* an unknown currency code: two decimals */
	}
	return `${m.currency} ${(m.amount / 10 ** digits).toFixed(digits)}`;
}

export function emailVerification(d: { firstName?: string | null; token: string; expiresAt?: string | null; verifyUrl: string }): Rendered {
	const link = `${d.verifyUrl}${d.verifyUrl.includes("?") ? "&" : "?"}token=${encodeURIComponent(d.token)}`;
	const lines = [
		`Hello${d.firstName ? ` ${d.firstName}` : ""},`,
		"",
		"please confirm your email address by opening this link:",
		link,
		"",
		`or by entering this code: ${d.token}`,
		""
	];
	if (d.expiresAt) lines.push(`The link works until ${d.expiresAt}.`);
	lines.push("If you did not create an account, ignore this email.");
	return { subject: "Confirm your email address", text: lines.join("\n") };
}

export function orderConfirmed(d: { orderNumber: string; total?: MoneyLike | null }): Rendered {
	const lines = [`Thank you! Your order ${d.orderNumber} is confirmed.`];
	if (d.total && Number.isInteger(d.total.amount) && typeof d.total.currency === "string") lines.push(`Total: ${formatMoney(d.total)}`);
	lines.push("", "We will let you know when it ships.");
	return { subject: `Order ${d.orderNumber} confirmed`, text: lines.join("\n") };
}

export const TEMPLATES = {
	email_verification: emailVerification,
	order_confirmed: orderConfirmed
} as const;

export type TemplateName = keyof typeof TEMPLATES;
