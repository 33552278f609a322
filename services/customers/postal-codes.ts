/**
 * Where we ship and how each country writes its postal codes. Pure functions, no broker:
 * test/unit/postal-codes.test.ts checks every country.
 *
 * A code is read leniently (surrounding spaces, lower case, a missing or doubled space where
 * the country writes one) and answered in the country's own spelling — `02-495`, `SW1A 1AA`,
 * `1012 AB` — so what is stored and printed on a label is always the canonical form.
 */

export interface PostalRule {
	/** The format as a person reads it, e.g. `NN-NNN`, quoted in the 422. */
	format: string;
	/** The canonical form (upper case, spaces as the country writes them). */
	pattern: RegExp;
	/** How a leniently written code is brought to the canonical form before the check. */
	normalize?: (code: string) => string;
}

/** Inserts one space before the last `inward` characters (GB, CZ, NL, SK, SE, CA). */
const spaceBeforeLast = (inward: number) => (code: string) => {
	const compact = code.replace(/\s+/g, "");
	return compact.length > inward ? `${compact.slice(0, -inward)} ${compact.slice(-inward)}` : compact;
};

/** Outward code (area, district, optional sub-district letter), a space, inward code (sector digit, unit letters). */
const GB = /^(GIR 0AA|[A-PR-UWYZ](?:[0-9]{1,2}|[0-9][A-HJKPSTUW]|[A-HK-Y][0-9]{1,2}|[A-HK-Y][0-9][ABEHMNPRV-Y]) [0-9][ABD-HJLNP-UW-Z]{2})$/;

export const POSTAL_RULES: Readonly<Record<string, PostalRule>> = {
	AT: { format: "NNNN", pattern: /^[1-9][0-9]{3}$/ },
	BE: { format: "NNNN", pattern: /^[1-9][0-9]{3}$/ },
	CZ: { format: "NNN NN", pattern: /^[1-7][0-9]{2} [0-9]{2}$/, normalize: spaceBeforeLast(2) },
	DE: { format: "NNNNN", pattern: /^[0-9]{5}$/ },
	ES: { format: "NNNNN (01–52)", pattern: /^(?:0[1-9]|[1-4][0-9]|5[0-2])[0-9]{3}$/ },
	FR: { format: "NNNNN", pattern: /^[0-9]{5}$/ },
	GB: { format: "outward code, space, inward code (e.g. SW1A 1AA, M1 1AE)", pattern: GB, normalize: spaceBeforeLast(3) },
	IT: { format: "NNNNN", pattern: /^[0-9]{5}$/ },
	NL: { format: "NNNN AA", pattern: /^[1-9][0-9]{3} (?!SA|SD|SS)[A-Z]{2}$/, normalize: spaceBeforeLast(2) },
	PL: { format: "NN-NNN", pattern: /^[0-9]{2}-[0-9]{3}$/ },
	SK: { format: "NNN NN", pattern: /^[089][0-9]{2} [0-9]{2}$/, normalize: spaceBeforeLast(2) },
	US: { format: "NNNNN or NNNNN-NNNN", pattern: /^[0-9]{5}(?:-[0-9]{4})?$/ }
};

export const SUPPORTED_COUNTRIES: readonly string[] = Object.keys(POSTAL_RULES).sort();

export type PostalVerdict =
	| { ok: true; country: string; postalCode: string }
	| { ok: false; field: "country" | "postalCode"; message: string; type: string };

/** Country as ISO 3166 alpha-2, upper-cased; undefined when not of that shape. */
export function normalizeCountry(country: string): string | undefined {
	const c = country.trim().toUpperCase();
	return /^[A-Z]{2}$/.test(c) ? c : undefined;
}

/**
 * Judges a postal code for a country: an unsupported (or malformed) country names `country`
 * and lists the supported ones; a code that does not fit names `postalCode` and states the
 * country's format. On success answers both in canonical form.
 */
export function checkPostalCode(country: string, postalCode: string): PostalVerdict {
	const c = normalizeCountry(country);
	const rule = c ? POSTAL_RULES[c] : undefined;
	if (!c || !rule) {
		return {
			ok: false,
			field: "country",
			type: "country.unsupported",
			message: `We do not ship to "${country.trim().slice(0, 20)}": country must be the ISO 3166 alpha-2 code of a supported country (${SUPPORTED_COUNTRIES.join(", ")})`
		};
	}
	const upper = postalCode.trim().toUpperCase().replace(/\s+/g, " ");
	const code = rule.normalize ? rule.normalize(upper) : upper;
	if (!rule.pattern.test(code)) {
		return {
			ok: false,
			field: "postalCode",
			type: "postalCode.format",
			message: `"${postalCode.trim().slice(0, 20)}" is not a postal code of ${c}: expected ${rule.format}`
		};
	}
	return { ok: true, country: c, postalCode: code };
}
