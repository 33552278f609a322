/**
 * Splits an integer amount (minor units) across lines in proportion to their amounts, so that
 * the parts are integers and add up to the total exactly (largest-remainder method).
 *
 * Each part is the exact share rounded down; the units left over go one each to the parts with
 * the largest fractional remainders (ties to the earlier line). So every part is within one unit
 * of its exact share, and when the total does not exceed the sum of the weights no part exceeds
 * its own weight: a discount allocated this way never makes a line negative.
 *
 * When every weight is zero the total is split evenly. Arithmetic is in BigInt: amount × weight
 * can pass 2^53 long before either does.
 */
export function allocate(total: number, weights: readonly number[]): number[] {
	if (!Number.isSafeInteger(total) || total < 0) throw new RangeError(`allocate: total must be a non-negative integer, got ${total}`);
	for (const w of weights) {
		if (!Number.isSafeInteger(w) || w < 0) throw new RangeError(`allocate: weights must be non-negative integers, got ${w}`);
	}
	if (weights.length === 0) {
		if (total === 0) return [];
		throw new RangeError("allocate: cannot split a non-zero total across no lines");
	}
	const sum = weights.reduce((a, w) => a + BigInt(w), 0n);
	const effective = sum === 0n ? weights.map(() => 1n) : weights.map(w => BigInt(w));
	const denominator = sum === 0n ? BigInt(weights.length) : sum;
	const t = BigInt(total);
	const parts = effective.map(w => (t * w) / denominator);
	const remainders = effective.map((w, i) => ({ i, r: (t * w) % denominator }));
	let left = Number(t - parts.reduce((a, p) => a + p, 0n));
	remainders.sort((a, b) => (a.r === b.r ? a.i - b.i : a.r > b.r ? -1 : 1));
	for (const { i } of remainders) {
		if (left === 0) break;
		parts[i]! += 1n;
		left--;
	}
	return parts.map(p => Number(p));
}
