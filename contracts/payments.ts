/**
 * How a payment can fail, in one place: the provider's refusals (final answers about the card or
 * account), and a payment the buyer never completed before its deadline (BLIK, PayPal). An order
 * that failed for any of them is `payment_failed`; any other failure cancels it.
 */
export const PAYMENT_REFUSALS = ["PAYMENT_DECLINED", "INSUFFICIENT_FUNDS", "UNSUPPORTED_CARD"] as const;
export type PaymentRefusal = (typeof PAYMENT_REFUSALS)[number];

export const PAYMENT_FAILURES = [...PAYMENT_REFUSALS, "DEADLINE_PASSED"] as const;
export type PaymentFailure = (typeof PAYMENT_FAILURES)[number];

export function isPaymentFailure(type: string | null | undefined): type is PaymentFailure {
	return !!type && (PAYMENT_FAILURES as readonly string[]).includes(type);
}
