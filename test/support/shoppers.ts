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
}

export const newLoad = (): Load => ({ placed: [], statuses: {}, bad: [], outcomes: {}, endedAt: [] });

export const placeCard = (http: Http, c: Customer, key: string) => http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token, { "idempotency-key": key });

/** One shopper until `until`. */
export async function shopper(http: Http, productId: string, c: Customer, tag: string, until: number, load: Load) {
	const note = (a: HttpAnswer, what: string) => {
		load.statuses[a.status] = (load.statuses[a.status] ?? 0) + 1;
		// A 504 is tolerated: the same key's retry must then answer the order (the tests check every key at the end).
		if (a.status === 404 || (a.status >= 500 && a.status !== 503 && a.status !== 504)) load.bad.push(`${what}: ${a.status} ${JSON.stringify(a.body).slice(0, 200)}`);
	};
	const tryHttp = async (fn: () => Promise<HttpAnswer>) => fn().catch(err => ({ status: 599, body: { message: String(err?.message ?? err) }, headers: new Headers() }) as HttpAnswer);
	for (let i = 0; Date.now() < until; i++) {
		const add = await tryHttp(() => http.post("/api/cart/items", { productId, quantity: 1 }, c.token));
		if (add.status !== 200) {
			await sleep(300);
			continue;
		}
		try {
			await readyCheckout(http, c.token);
		} catch {
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
