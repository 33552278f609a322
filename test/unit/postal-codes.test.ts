import { expect } from "chai";
import { checkPostalCode, normalizeCountry, POSTAL_RULES, SUPPORTED_COUNTRIES } from "../../services/customers/postal-codes";

/** For each country: codes as people write them → the stored spelling, and codes that must be refused. */
const CASES: Record<string, { good: Array<[string, string]>; bad: string[] }> = {
	PL: { good: [["02-495", "02-495"], [" 00-001 ", "00-001"]], bad: ["02495", "02 495", "2-495", "02-4955", "AB-CDE", ""] },
	DE: { good: [["10115", "10115"], ["01067", "01067"]], bad: ["1011", "101155", "10 115", "D-10115"] },
	US: { good: [["90210", "90210"], ["90210-1234", "90210-1234"]], bad: ["9021", "902101", "90210-123", "90210 1234", "90210-12345"] },
	GB: {
		good: [["SW1A 1AA", "SW1A 1AA"], ["sw1a1aa", "SW1A 1AA"], ["M1 1AE", "M1 1AE"], ["B33 8TH", "B33 8TH"], ["CR2 6XH", "CR2 6XH"], ["DN55 1PT", "DN55 1PT"], ["W1A 0AX", "W1A 0AX"], ["EC1A  1BB", "EC1A 1BB"]],
		bad: ["SW1A", "1AA", "QW1 1AA", "SW1A 1CA", "SW1A 11A", "12345", "SW1A-1AA"]
	},
	FR: { good: [["75008", "75008"]], bad: ["7500", "750080", "75 008"] },
	CZ: { good: [["110 00", "110 00"], ["11000", "110 00"], ["602  00", "602 00"]], bad: ["1100", "110-00", "010 00", "110 000"] },
	NL: { good: [["1012 AB", "1012 AB"], ["1012ab", "1012 AB"]], bad: ["0123 AB", "1012 A", "1012 SA", "1012 SS", "10123 AB", "AB 1012"] },
	AT: { good: [["1010", "1010"]], bad: ["0101", "10100"] },
	BE: { good: [["1000", "1000"]], bad: ["100", "0999"] },
	ES: { good: [["28013", "28013"], ["52001", "52001"]], bad: ["53001", "00123", "2801"] },
	IT: { good: [["00184", "00184"]], bad: ["0018", "001845"] },
	SK: { good: [["811 01", "811 01"], ["81101", "811 01"]], bad: ["111 01", "8110"] }
};

describe("postal codes per country", () => {
	it("every supported country has cases here, and the supported list is sorted and complete", () => {
		expect(Object.keys(CASES).sort()).to.deep.equal(SUPPORTED_COUNTRIES);
		expect(SUPPORTED_COUNTRIES).to.include.members(["PL", "DE", "US", "GB", "FR", "CZ", "NL"]);
		expect([...SUPPORTED_COUNTRIES].sort()).to.deep.equal(Object.keys(POSTAL_RULES).sort());
	});

	for (const [country, { good, bad }] of Object.entries(CASES)) {
		it(`${country}: well-formed codes are accepted in the country's own spelling`, () => {
			for (const [written, stored] of good) {
				expect(checkPostalCode(country, written), written).to.deep.equal({ ok: true, country, postalCode: stored });
			}
		});

		it(`${country}: codes of another shape are refused naming postalCode and stating ${POSTAL_RULES[country]!.format}`, () => {
			for (const code of bad) {
				const v = checkPostalCode(country, code);
				expect(v.ok, `"${code}"`).to.equal(false);
				if (v.ok) continue;
				expect(v.field).to.equal("postalCode");
				expect(v.message).to.include(`expected ${POSTAL_RULES[country]!.format}`).and.include(country);
			}
		});
	}

	it("the country is read case-insensitively and answered upper-cased", () => {
		expect(checkPostalCode(" pl ", "02-495")).to.deep.equal({ ok: true, country: "PL", postalCode: "02-495" });
		expect(checkPostalCode("gb", "sw1a 1aa")).to.deep.equal({ ok: true, country: "GB", postalCode: "SW1A 1AA" });
		expect(normalizeCountry("de")).to.equal("DE");
		expect(normalizeCountry("DEU")).to.equal(undefined);
	});

	it("an unsupported or malformed country is refused naming country and listing the supported ones, whatever the code", () => {
		for (const country of ["XX", "JP", "Poland", "POL", "P", "", "1A"]) {
			const v = checkPostalCode(country, "02-495");
			expect(v.ok, country).to.equal(false);
			if (v.ok) continue;
			expect(v.field).to.equal("country");
			expect(v.message).to.include("ISO 3166 alpha-2").and.include(SUPPORTED_COUNTRIES.join(", "));
		}
	});

	it("one country's code is not another's: a Polish code is not a German one and the reverse", () => {
		expect(checkPostalCode("DE", "02-495").ok).to.equal(false);
		expect(checkPostalCode("PL", "10115").ok).to.equal(false);
		expect(checkPostalCode("NL", "110 00").ok).to.equal(false);
		expect(checkPostalCode("CZ", "1012 AB").ok).to.equal(false);
	});
});
