/**
 * The card payment provider, behind an interface: the payments service talks only to
 * `CardProvider`. `SimulatedCardProvider` behaves like a real one for the test cards
 * below (docs/api.md lists them too), so everything runs and is tested here:
 *
 *   4242 4242 4242 4242  authorizes
 *   4000 0000 0000 0002  declined                   → PAYMENT_DECLINED
 *   4000 0000 0000 9995  insufficient funds         → INSUFFICIENT_FUNDS
 *   4000 0000 0000 0119  the provider fails to answer (gateway error, worth a retry)
 *   an expired card      declined, "expired"        → PAYMENT_DECLINED
 *   a brand we don't take (e.g. starting with 9)    → UNSUPPORTED_CARD
 *   any other Luhn-valid number authorizes.
 *
 * Like a real provider it is idempotent: an authorization or refund sent again with the same
 * idempotency key answers the same reference instead of charging twice.
 */
import { createHash, randomUUID } from "node:crypto";
import type { Money } from "../../contracts/money";
import { Card, isExpired } from "./card";

export type RefusalType = "PAYMENT_DECLINED" | "INSUFFICIENT_FUNDS" | "UNSUPPORTED_CARD";

/** A refusal (the card's answer, final) or PROVIDER_UNAVAILABLE (no answer; try again later). */
export type ProviderFailure = { ok: false; type: RefusalType | "PROVIDER_UNAVAILABLE"; message: string };

export type ProviderResult = { ok: true; providerRef: string } | ProviderFailure;

export interface CardProvider {
	/** Holds `amount` on the card. */
	authorize(card: Card, amount: Money, opts?: { idempotencyKey?: string }): Promise<ProviderResult>;
	/** Releases an authorization. */
	void(ref: string): Promise<ProviderResult>;
	/** Takes the held money. */
	capture(ref: string, amount: Money): Promise<ProviderResult>;
	/** Gives captured money back; `providerRef` of the answer names the refund. */
	refund(ref: string, amount: Money, opts?: { idempotencyKey?: string }): Promise<ProviderResult>;
}

export const TEST_CARDS = {
	ok: "4242424242424242",
	declined: "4000000000000002",
	insufficientFunds: "4000000000009995",
	gatewayError: "4000000000000119"
} as const;

const AUTH_PREFIX = "sim_auth_";

export class SimulatedCardProvider implements CardProvider {
	constructor(private readonly now: () => Date = () => new Date()) {}

	async authorize(card: Card, amount: Money, opts: { idempotencyKey?: string } = {}): Promise<ProviderResult> {
		if (!card.brand) return { ok: false, type: "UNSUPPORTED_CARD", message: "This card type is not supported" };
		if (isExpired(card.expMonth, card.expYear, this.now())) return { ok: false, type: "PAYMENT_DECLINED", message: "The card was declined: it has expired" };
		if (!(Number.isSafeInteger(amount.amount) && amount.amount > 0)) return { ok: false, type: "PAYMENT_DECLINED", message: "The card was declined: invalid amount" };
		switch (card.number) {
			case TEST_CARDS.declined:
				return { ok: false, type: "PAYMENT_DECLINED", message: "The card was declined by its issuer" };
			case TEST_CARDS.insufficientFunds:
				return { ok: false, type: "INSUFFICIENT_FUNDS", message: "The card was declined: insufficient funds" };
			case TEST_CARDS.gatewayError:
				return { ok: false, type: "PROVIDER_UNAVAILABLE", message: "The payment provider did not answer" };
		}
		return { ok: true, providerRef: ref(AUTH_PREFIX, opts.idempotencyKey) };
	}

	async void(authRef: string): Promise<ProviderResult> {
		if (!authRef.startsWith(AUTH_PREFIX)) return { ok: false, type: "PROVIDER_UNAVAILABLE", message: "Unknown authorization" };
		return { ok: true, providerRef: authRef };
	}

	async capture(authRef: string, amount: Money): Promise<ProviderResult> {
		if (!authRef.startsWith(AUTH_PREFIX)) return { ok: false, type: "PROVIDER_UNAVAILABLE", message: "Unknown authorization" };
		if (!(amount.amount > 0)) return { ok: false, type: "PAYMENT_DECLINED", message: "Nothing to capture" };
		return { ok: true, providerRef: authRef };
	}

	async refund(authRef: string, amount: Money, opts: { idempotencyKey?: string } = {}): Promise<ProviderResult> {
		if (!authRef.startsWith(AUTH_PREFIX)) return { ok: false, type: "PROVIDER_UNAVAILABLE", message: "Unknown authorization" };
		if (!(amount.amount > 0)) return { ok: false, type: "PAYMENT_DECLINED", message: "Nothing to refund" };
		return { ok: true, providerRef: ref("sim_refund_", opts.idempotencyKey) };
	}
}

/** A reference: derived from the idempotency key when there is one, so a repeat gets the same. */
function ref(prefix: string, key?: string): string {
	const id = key ? createHash("sha256").update(key).digest("hex").slice(0, 32) : randomUUID().replace(/-/g, "");
	return prefix + id;
}
