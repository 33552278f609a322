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
 *
 * BLIK and PayPal are decided by the buyer later, so they start as pending and their outcome
 * arrives through the gateway like a real provider's: a signed webhook (BLIK) or the buyer's
 * browser coming back from PayPal (return / cancel). The simulated BLIK bank answers:
 *
 *   777123  approved shortly after (BLIK_ANSWER_DELAY_MS)
 *   777000  rejected shortly after
 *   any other code: never answers (the order gives up at its deadline)
 *
 * A webhook the gateway does not take (down, 5xx) is sent again a few times, as providers do.
 */
import { createHash, randomUUID } from "node:crypto";
import type { Money } from "../../contracts/money";
import type { PaymentRefusal } from "../../contracts/payments";
import { signWebhook, WebhookBody } from "../../contracts/webhook";
import { Card, isExpired } from "./card";

export type RefusalType = PaymentRefusal;

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

export type StartResult = { ok: true; providerRef: string; redirectUrl?: string } | ProviderFailure;

/** Every method the shop takes: cards at once, BLIK and PayPal decided by the buyer later. */
export interface PaymentProvider extends CardProvider {
	/** Asks the buyer's bank to approve a BLIK code; the answer comes as a webhook on `providerRef`. */
	startBlik(blikCode: string, amount: Money, opts?: { idempotencyKey?: string }): Promise<StartResult>;
	/** Opens a PayPal order; the buyer approves at `redirectUrl` and comes back with `token` = `providerRef`. */
	startPayPal(amount: Money, opts: { returnUrl: string; cancelUrl: string; idempotencyKey?: string }): Promise<StartResult>;
	/** Cancels a payment still waiting for the buyer; a late approval of it is then voided. */
	cancel(ref: string): Promise<ProviderResult>;
	/** Stops sending anything (timers of pending answers). */
	close(): void;
}

export interface WebhookTarget {
	/** The gateway's base URL, e.g. http://127.0.0.1:3000 (read at send time). */
	url: () => string;
	secret: string;
	delayMs: number;
	approveUrl: string;
	/** Told when a webhook could not be delivered after every attempt. */
	onGiveUp?: (body: WebhookBody, reason: string) => void;
}

export const BLIK_CODES = { approves: "777123", rejects: "777000" } as const;

export const TEST_CARDS = {
	ok: "4242424242424242",
	declined: "4000000000000002",
	insufficientFunds: "4000000000009995",
	gatewayError: "4000000000000119"
} as const;

const AUTH_PREFIX = "sim_auth_";
const BLIK_PREFIX = "sim_blik_";
const PAYPAL_PREFIX = "sim_pp_";
const KNOWN = [AUTH_PREFIX, BLIK_PREFIX, PAYPAL_PREFIX];
const known = (ref: string) => KNOWN.some(p => ref.startsWith(p));
const WEBHOOK_ATTEMPTS = 6;

export class SimulatedCardProvider implements PaymentProvider {
	private timers = new Set<NodeJS.Timeout>();
	private closed = false;

	constructor(
		private readonly now: () => Date = () => new Date(),
		public webhook: WebhookTarget | null = null
	) {}

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

	async startBlik(blikCode: string, amount: Money, opts: { idempotencyKey?: string } = {}): Promise<StartResult> {
		if (!/^[0-9]{6}$/.test(blikCode)) return { ok: false, type: "PAYMENT_DECLINED", message: "A BLIK code has six digits" };
		if (!(Number.isSafeInteger(amount.amount) && amount.amount > 0)) return { ok: false, type: "PAYMENT_DECLINED", message: "Invalid amount" };
		const providerRef = ref(BLIK_PREFIX, opts.idempotencyKey);
		if (blikCode === BLIK_CODES.approves) this.answerLater(providerRef, "approved");
		else if (blikCode === BLIK_CODES.rejects) this.answerLater(providerRef, "rejected");
		return { ok: true, providerRef };
	}

	async startPayPal(amount: Money, opts: { returnUrl: string; cancelUrl: string; idempotencyKey?: string }): Promise<StartResult> {
		if (!(Number.isSafeInteger(amount.amount) && amount.amount > 0)) return { ok: false, type: "PAYMENT_DECLINED", message: "Invalid amount" };
		const providerRef = ref(PAYPAL_PREFIX, opts.idempotencyKey);
		const base = this.webhook?.approveUrl ?? "https://www.sandbox.paypal.com/checkoutnow";
		return { ok: true, providerRef, redirectUrl: `${base}?token=${encodeURIComponent(providerRef)}` };
	}

	async cancel(ref: string): Promise<ProviderResult> {
		if (!known(ref)) return { ok: false, type: "PROVIDER_UNAVAILABLE", message: "Unknown payment" };
		return { ok: true, providerRef: ref };
	}

	close(): void {
		this.closed = true;
		for (const t of this.timers) clearTimeout(t);
		this.timers.clear();
	}

	/** The bank's answer, sent to the gateway after the configured delay (and again while it is not taken). */
	private answerLater(transactionId: string, status: WebhookBody["status"]) {
		const target = this.webhook;
		if (!target) return;
		const body: WebhookBody = { eventId: randomUUID(), transactionId, status };
		const send = (attempt: number) => {
			const t = setTimeout(async () => {
				this.timers.delete(t);
				if (this.closed) return;
				const raw = JSON.stringify(body);
				let problem: string | null = null;
				try {
					const res = await fetch(`${target.url()}/api/payments/webhooks/simulated`, {
						method: "POST",
						headers: { "content-type": "application/json", "x-signature": signWebhook(raw, target.secret) },
						body: raw
					});
					if (res.status >= 500 || res.status === 429) problem = `HTTP ${res.status}`;
					else if (!res.ok) return target.onGiveUp?.(body, `HTTP ${res.status}`); // refused: sending again changes nothing
				} catch (err: any) {
					problem = err?.message ?? String(err);
				}
				if (!problem) return;
				if (attempt >= WEBHOOK_ATTEMPTS) return target.onGiveUp?.(body, problem);
				send(attempt + 1);
			}, attempt === 1 ? target.delayMs : 250 * 2 ** attempt);
			this.timers.add(t);
		};
		send(1);
	}

	async void(authRef: string): Promise<ProviderResult> {
		if (!known(authRef)) return { ok: false, type: "PROVIDER_UNAVAILABLE", message: "Unknown authorization" };
		return { ok: true, providerRef: authRef };
	}

	async capture(authRef: string, amount: Money): Promise<ProviderResult> {
		if (!known(authRef)) return { ok: false, type: "PROVIDER_UNAVAILABLE", message: "Unknown authorization" };
		if (!(amount.amount > 0)) return { ok: false, type: "PAYMENT_DECLINED", message: "Nothing to capture" };
		return { ok: true, providerRef: authRef };
	}

	async refund(authRef: string, amount: Money, opts: { idempotencyKey?: string } = {}): Promise<ProviderResult> {
		if (!known(authRef)) return { ok: false, type: "PROVIDER_UNAVAILABLE", message: "Unknown authorization" };
		if (!(amount.amount > 0)) return { ok: false, type: "PAYMENT_DECLINED", message: "Nothing to refund" };
		return { ok: true, providerRef: ref("sim_refund_", opts.idempotencyKey) };
	}
}

/** A reference: derived from the idempotency key when there is one, so a repeat gets the same. */
function ref(prefix: string, key?: string): string {
	const id = key ? createHash("sha256").update(key).digest("hex").slice(0, 32) : randomUUID().replace(/-/g, "");
	return prefix + id;
}
