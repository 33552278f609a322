/** The money allocator: parts are integers, sum to the total exactly, and stay proportional. */
import { expect } from "chai";
import fc from "fast-check";
import { allocate } from "../../contracts/allocate";

const weight = fc.integer({ min: 0, max: 10_000_000_00 });
const weights = fc.array(weight, { minLength: 1, maxLength: 30 });

describe("allocate (largest remainder)", () => {
	it("splits in proportion, the leftover units to the largest remainders", () => {
		expect(allocate(100, [1, 1, 1])).to.deep.equal([34, 33, 33]);
		expect(allocate(10, [5000, 3000, 2000])).to.deep.equal([5, 3, 2]);
		expect(allocate(1000, [3333, 3333, 3334])).to.deep.equal([333, 333, 334]);
		expect(allocate(7, [2, 2, 6])).to.deep.equal([2, 1, 4]); // 1.4, 1.4, 4.2: one unit left, to the first .4
		expect(allocate(0, [5, 7])).to.deep.equal([0, 0]);
		expect(allocate(5, [0, 10, 0])).to.deep.equal([0, 5, 0]);
	});

	it("splits evenly when every weight is zero, and refuses what has no answer", () => {
		expect(allocate(5, [0, 0])).to.deep.equal([3, 2]);
		expect(allocate(0, [])).to.deep.equal([]);
		expect(() => allocate(1, [])).to.throw(RangeError);
		expect(() => allocate(1.5, [1])).to.throw(RangeError);
		expect(() => allocate(-1, [1])).to.throw(RangeError);
		expect(() => allocate(1, [1, -2])).to.throw(RangeError);
		expect(() => allocate(1, [0.5])).to.throw(RangeError);
	});

	it("stays exact where floats would not (amount × weight beyond 2^53)", () => {
		const parts = allocate(9_007_199_254_740, [9_007_199_254_740, 3, 1]);
		expect(parts.reduce((a, b) => a + b, 0)).to.equal(9_007_199_254_740);
		expect(parts[2]).to.be.at.most(1);
	});

	it("property: the parts are non-negative integers that sum to the total exactly", () => {
		fc.assert(
			fc.property(fc.integer({ min: 0, max: 10_000_000_00 }), weights, (total, ws) => {
				const parts = allocate(total, ws);
				expect(parts).to.have.length(ws.length);
				for (const p of parts) expect(Number.isSafeInteger(p) && p >= 0).to.equal(true);
				expect(parts.reduce((a, b) => a + b, 0)).to.equal(total);
			}),
			{ numRuns: 500 }
		);
	});

	it("property: each part is within one unit of its exact proportional share", () => {
		fc.assert(
			fc.property(fc.integer({ min: 0, max: 1_000_000 }), weights.filter(ws => ws.some(w => w > 0)), (total, ws) => {
				const sum = ws.reduce((a, b) => a + b, 0);
				allocate(total, ws).forEach((p, i) => {
					const exact = (total * ws[i]!) / sum;
					expect(p).to.be.within(Math.floor(exact) - 1e-9, Math.ceil(exact) + 1e-9);
				});
			}),
			{ numRuns: 500 }
		);
	});

	it("property: a total no larger than the weights never gives a part more than its weight", () => {
		fc.assert(
			fc.property(weights, fc.double({ min: 0, max: 1, noNaN: true }), (ws, fraction) => {
				const sum = ws.reduce((a, b) => a + b, 0);
				const total = Math.floor(sum * fraction);
				allocate(total, ws).forEach((p, i) => expect(p).to.be.at.most(ws[i]!));
			}),
			{ numRuns: 500 }
		);
	});

	it("property: a line with a larger amount never gets a smaller part, and the same input gives the same parts", () => {
		fc.assert(
			fc.property(fc.integer({ min: 0, max: 1_000_000 }), weights, (total, ws) => {
				const parts = allocate(total, ws);
				for (let i = 0; i < ws.length; i++) {
					for (let j = 0; j < ws.length; j++) if (ws[i]! > ws[j]!) expect(parts[i]).to.be.at.least(parts[j]!);
				}
				expect(allocate(total, ws)).to.deep.equal(parts);
			}),
			{ numRuns: 300 }
		);
	});
});
