/**
 * Card numbers: shape, Luhn check, brand, expiry. Pure functions. Nothing here logs or
 * echoes a card number; messages say what is wrong without repeating the number.
 */

export type CardBrand = "visa" | "mastercard" | "amex" | "discover";

export interface Card {
	number: string;
	expMonth: number;
	expYear: number;
	brand: CardBrand | null;
}

/** Digits only: spaces and dashes a person types are dropped. */
export function normalizeNumber(raw: string): string {
	return raw.replace(/[\s-]/g, "");
}

export function hasCardShape(number: string): boolean {
	return /^[0-9]{13,19}$/.test(number);
}

export function luhnValid(number: string): boolean {
	if (!/^[0-9]+$/.test(number)) return false;
	let total = 0;
	for (let i = 0; i < number.length; i++) {
		let d = number.charCodeAt(number.length - 1 - i) - 48;
		if (i % 2 === 1) {
			d *= 2;
			if (d > 9) d -= 9;
		}
		total += d;
	}
	return total % 10 === 0;
}

/** The brands the shop accepts, by their number prefixes; null for any other. */
export function brandOf(number: string): CardBrand | null {
	if (/^4/.test(number)) return "visa";
	if (/^3[47]/.test(number)) return "amex";
	if (/^5[1-5]/.test(number)) return "mastercard";
	const six = Number(number.slice(0, 6));
	if (six >= 222100 && six <= 272099) return "mastercard";
	if (/^(6011|65|64[4-9])/.test(number)) return "discover";
	return null;
}

/** A card is good through the last day of its expiry month (UTC). */
export function isExpired(expMonth: number, expYear: number, now: Date = new Date()): boolean {
	const y = now.getUTCFullYear();
	const m = now.getUTCMonth() + 1;
	return expYear < y || (expYear === y && expMonth < m);
}

export function last4(number: string): string {
	return number.slice(-4);
}

export type CardCheck =
	| { ok: true; number: string; brand: CardBrand; last4: string }
	| { ok: false; problem: "invalid_number"; message: string }
	| { ok: false; problem: "unsupported"; message: string }
	| { ok: false; problem: "expired"; message: string };

/** What a card's details are worth before any provider sees them. */
export function checkCard(input: { cardNumber: string; expMonth: number; expYear: number }, now: Date = new Date()): CardCheck {
	const number = normalizeNumber(input.cardNumber);
	if (!hasCardShape(number)) return { ok: false, problem: "invalid_number", message: "A card number has 13 to 19 digits" };
	if (!luhnValid(number)) return { ok: false, problem: "invalid_number", message: "This card number is not valid (check digit)" };
	const brand = brandOf(number);
	if (!brand) return { ok: false, problem: "unsupported", message: "This card type is not supported; we accept Visa, Mastercard, American Express and Discover" };
	if (isExpired(input.expMonth, input.expYear, now)) return { ok: false, problem: "expired", message: "The card has expired" };
	return { ok: true, number, brand, last4: last4(number) };
}
