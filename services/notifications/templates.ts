/**
 * Every message the shop sends: one handlebars template per message, with a subject, a
 * plain-text body and an HTML body (HTML escapes what it inserts; plain text does not need to).
 * The template's name is what the delivery log records. SMS messages use the text body only.
 */
import Handlebars from "handlebars";

export interface Rendered {
	subject: string;
	text: string;
	html: string;
}

export interface MoneyLike {
	amount: number;
	currency: string;
}

/**
 * A currency's number of decimals, asked of Intl once per currency: building a NumberFormat costs
 * more than the rest of a message's rendering (6.7 % of the notifications process at saturation).
 */
const decimals = new Map<string, number>();
function decimalsOf(currency: string): number {
	let digits = decimals.get(currency);
	if (digits === undefined) {
		try {
			digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2;
		} catch {
			digits = 2; // an unknown currency code: two decimals
		}
		// Currency codes come from events: the map stays small unless someone sends garbage, which gets no entry.
		if (/^[A-Z]{3}$/.test(currency)) decimals.set(currency, digits);
	}
	return digits;
}

/** 12999 PLN → "PLN 129.99" (the currency's own number of decimals). */
export function formatMoney(m: MoneyLike | null | undefined): string {
	if (!m || !Number.isInteger(m.amount) || typeof m.currency !== "string") return "";
	const digits = decimalsOf(m.currency);
	return `${m.currency} ${(m.amount / 10 ** digits).toFixed(digits)}`;
}

const SOURCES = {
	email_verification: {
		subject: "Confirm your email address",
		text: `Hello{{#if firstName}} {{firstName}}{{/if}},

please confirm your email address by opening this link:
{{link}}

or by entering this code: {{token}}
{{#if expiresAt}}
The link works until {{expiresAt}}.{{/if}}
If you did not create an account, ignore this email.`,
		html: `<p>Hello{{#if firstName}} {{firstName}}{{/if}},</p>
<p>please confirm your email address: <a href="{{link}}">confirm</a></p>
<p>or enter this code: <code>{{token}}</code></p>
{{#if expiresAt}}<p>The link works until {{expiresAt}}.</p>{{/if}}
<p>If you did not create an account, ignore this email.</p>`
	},
	order_placed: {
		subject: "We received your order {{orderNumber}}",
		text: `Thank you for your order {{orderNumber}}.

{{#each lines}}{{quantity}} × {{name}}  {{money unitPrice}}  = {{money lineTotal}}
{{/each}}
{{#if discount}}Discount: -{{money discount}}
{{/if}}{{#if shipping}}Shipping: {{money shipping}}
{{/if}}Total: {{money total}}

We will write again once the payment is confirmed.`,
		html: `<p>Thank you for your order <strong>{{orderNumber}}</strong>.</p>
<table>{{#each lines}}<tr><td>{{quantity}} ×</td><td>{{name}}</td><td>{{money unitPrice}}</td><td>{{money lineTotal}}</td></tr>{{/each}}</table>
{{#if discount}}<p>Discount: -{{money discount}}</p>{{/if}}{{#if shipping}}<p>Shipping: {{money shipping}}</p>{{/if}}
<p><strong>Total: {{money total}}</strong></p>`
	},
	order_confirmed: {
		subject: "Order {{orderNumber}} confirmed",
		text: `Thank you! Your order {{orderNumber}} is confirmed.
{{#if total}}Total: {{money total}}
{{/if}}
We will let you know when it ships.`,
		html: `<p>Thank you! Your order <strong>{{orderNumber}}</strong> is confirmed.</p>{{#if total}}<p>Total: {{money total}}</p>{{/if}}<p>We will let you know when it ships.</p>`
	},
	payment_failed: {
		subject: "Payment for order {{orderNumber}} failed",
		text: `The payment of {{money amount}} for your order {{orderNumber}} did not go through{{#if reason}}: {{reason}}{{/if}}.

Your cart is kept: you can try again with another payment method.`,
		html: `<p>The payment of {{money amount}} for your order <strong>{{orderNumber}}</strong> did not go through{{#if reason}}: {{reason}}{{/if}}.</p><p>Your cart is kept: you can try again with another payment method.</p>`
	},
	order_shipped: {
		subject: "Order {{orderNumber}} is on its way",
		text: `Your order {{orderNumber}} was handed to {{carrier}}.
Tracking number: {{trackingNumber}}`,
		html: `<p>Your order <strong>{{orderNumber}}</strong> was handed to {{carrier}}.</p><p>Tracking number: <code>{{trackingNumber}}</code></p>`
	},
	order_cancelled: {
		subject: "Order {{orderNumber}} cancelled",
		text: `Your order {{orderNumber}} was cancelled{{#if reason}}: {{reason}}{{/if}}.
{{#if refundAmount}}{{money refundAmount}} will be refunded.{{else}}Nothing was charged.{{/if}}`,
		html: `<p>Your order <strong>{{orderNumber}}</strong> was cancelled{{#if reason}}: {{reason}}{{/if}}.</p><p>{{#if refundAmount}}{{money refundAmount}} will be refunded.{{else}}Nothing was charged.{{/if}}</p>`
	},
	refund_processed: {
		subject: "Refund for order {{orderNumber}}",
		text: `We refunded {{money refundAmount}} for your order {{orderNumber}}{{#if reason}} ({{reason}}){{/if}}.
It reaches your account within a few days.`,
		html: `<p>We refunded <strong>{{money refundAmount}}</strong> for your order {{orderNumber}}{{#if reason}} ({{reason}}){{/if}}.</p><p>It reaches your account within a few days.</p>`
	},
	cart_expired: {
		subject: "Your cart was emptied",
		text: `Hello{{#if firstName}} {{firstName}}{{/if}},

your cart was not touched since {{lastActivityDate}}, so we emptied it{{#if itemCount}} ({{itemCount}} items){{/if}}.
The products are still in the shop if you want them.`,
		html: `<p>Hello{{#if firstName}} {{firstName}}{{/if}},</p><p>your cart was not touched since {{lastActivityDate}}, so we emptied it{{#if itemCount}} ({{itemCount}} items){{/if}}.</p><p>The products are still in the shop if you want them.</p>`
	},
	low_stock: {
		subject: "Low stock: {{productName}}",
		text: `{{productName}} (SKU {{sku}}) is running low: {{currentStock}} available, below the threshold of {{threshold}}.`,
		html: `<p><strong>{{productName}}</strong> (SKU {{sku}}) is running low: {{currentStock}} available, below the threshold of {{threshold}}.</p>`
	},
	out_of_stock: {
		subject: "Out of stock: {{productName}}",
		text: `{{productName}} (SKU {{sku}}) is out of stock: nothing is available.`,
		html: `<p><strong>{{productName}}</strong> (SKU {{sku}}) is out of stock: nothing is available.</p>`
	}
} as const;

export type TemplateName = keyof typeof SOURCES;
export const TEMPLATE_NAMES = Object.keys(SOURCES) as TemplateName[];

const text = Handlebars.create();
const html = Handlebars.create();
for (const hb of [text, html]) hb.registerHelper("money", (m: MoneyLike) => formatMoney(m));

const COMPILED = Object.fromEntries(
	Object.entries(SOURCES).map(([name, s]) => [
		name,
		{
			subject: text.compile(s.subject, { noEscape: true, strict: false }),
			text: text.compile(s.text, { noEscape: true }),
			html: html.compile(s.html)
		}
	])
) as Record<TemplateName, { subject: HandlebarsTemplateDelegate; text: HandlebarsTemplateDelegate; html: HandlebarsTemplateDelegate }>;

export function render(name: TemplateName, data: Record<string, unknown>): Rendered {
	const t = COMPILED[name];
	return { subject: t.subject(data).trim(), text: t.text(data).trim(), html: t.html(data).trim() };
}

/** The verification email's data: the link carries the token. */
export function verificationData(d: { firstName?: string | null; token: string; expiresAt?: string | null; verifyUrl: string }) {
	return { ...d, link: `${d.verifyUrl}${d.verifyUrl.includes("?") ? "&" : "?"}token=${encodeURIComponent(d.token)}` };
}
