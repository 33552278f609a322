/**
 * Storefront shoppers in a loop, for fault tests: each fills its cart, gets the checkout ready,
 * places a card order with an Idempotency-Key and retries with the same key until the order ends
 * — as a storefront does when it gets a 503, a timeout or an order still under way.
 */
import { Http, HttpAnswer } from "./http";
import { CARDS, readyCheckout, verifiedCustomer } from "./shop";

export type Customer = Awaited<ReturnType<typeof verifiedCustomer>>;

const TERMINAL = new Set(["confirmed", "cancelled", "payment_failed"]);
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

export interface Load {
	/** Every (customer, key) placed. */
	placed: Array<{ c: Customer; key: string }>;
	/** Statuses of every place and retry answered. */
	statuses: Record<string, number>;
	/** Answers that are never acceptable: 404, and 5xx other than a retryable 503 or a gateway timeout (504). */
	bad: string[];
	outcomes: Record<string, number>;
	/** When each order ended (the shopper learnt it), for throughput over time. */
	endedAt: number[];
	/** Strict: every 5xx is bad, a retryable 503 or a 504 too, on the preparing requests as on place. */
	strict?: boolean;
	/** Answers to the preparing requests (add to cart, address, shipping, payment method): "<status>" → count. */
	steps: Record<string, number>;
}

export const newLoad = (): Load => ({ placed: [], statuses: {}, bad: [], outcomes: {}, endedAt: [], steps: {} });

export const placeCard = (http: Http, c: Customer, key: string) => http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token, { "idempotency-key": key });

/** One shopper until `until`. */
export async function shopper(http: Http, productId: string, c: Customer, tag: string, until: number, load: Load) {
	const unacceptable = (status: number) => status === 404 || (status >= 500 && (load.strict || (status !== 503 && status !== 504)));
	const note = (a: HttpAnswer, what: string) => {
		load.statuses[a.status] = (load.statuses[a.status] ?? 0) + 1;
		// A 504 is tolerated: the same key's retry must then answer the order (the tests check every key at the end).
		if (unacceptable(a.status)) load.bad.push(`${new Date().toISOString()} ${what}: ${a.status} ${JSON.stringify(a.body).slice(0, 200)}`);
	};
	const step = (a: HttpAnswer, what: string) => {
		if (a.status === 599) return a;
		load.steps[a.status] = (load.steps[a.status] ?? 0) + 1;
		if (load.strict && unacceptable(a.status)) load.bad.push(`${new Date().toISOString()} ${what}: ${a.status} ${JSON.stringify(a.body).slice(0, 200)}`);
		return a;
	};
	const tryHttp = async (fn: () => Promise<HttpAnswer>) => fn().catch(err => ({ status: 599, body: { message: String(err?.message ?? err) }, headers: new Headers() }) as HttpAnswer);
	for (let i = 0; Date.now() < until; i++) {
		const add = step(await tryHttp(() => http.post("/api/cart/items", { productId, quantity: 1 }, c.token)), "add to cart");
		if (add.status !== 200) {
			await sleep(300);
			continue;
		}
		try {
			await readyCheckout(http, c.token);
			load.steps[200] = (load.steps[200] ?? 0) + 3;
		} catch (err) {
			// "expected HTTP 200, got <status>: …" from the address, shipping or payment-method step.
			const status = Number(/got (\d+)/.exec(String((err as Error)?.message))?.[1] ?? 599);
			step({ status, body: { message: String((err as Error)?.message).slice(0, 200) }, headers: new Headers() } as HttpAnswer, "ready the checkout");
			await sleep(300);
			continue;
		}
		const key = `${tag}-${i}`;
		load.placed.push({ c, key });
		const deadline = Date.now() + 120_000;
		for (;;) {
			const a = await tryHttp(() => placeCard(http, c, key));
			if (a.status !== 599) note(a, `place ${key}`);
			if (a.status === 202 && TERMINAL.has(a.body.status)) {
				load.outcomes[a.body.status] = (load.outcomes[a.body.status] ?? 0) + 1;
				load.endedAt.push(Date.now());
				break;
			}
			if (a.status === 409 && a.body?.type !== "CART_LOCKED") {
				load.outcomes[`409 ${a.body?.type}`] = (load.outcomes[`409 ${a.body?.type}`] ?? 0) + 1;
				break;
			}
			if (Date.now() > deadline) {
				load.bad.push(`place ${key} never ended: ${a.status} ${JSON.stringify(a.body).slice(0, 200)}`);
				break;
			}
			await sleep(300);
		}
	}
}
