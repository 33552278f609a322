/**
 * The storefront's and the admin's moves, through the public HTTP API only: the arrange
 * part of a test reads like what a customer and an operator do.
 */
import { randomUUID } from "node:crypto";
import { eventually } from "./cluster";
import { expectStatus, Http } from "./http";
import { TERMINAL_STATUSES } from "../../sagas";

export const CARDS = {
	ok: { cardNumber: "4242424242424242", expMonth: 12, expYear: 2030, cvc: "123" },
	declined: { cardNumber: "4000000000000002", expMonth: 12, expYear: 2030, cvc: "123" },
	insufficientFunds: { cardNumber: "4000000000009995", expMonth: 12, expYear: 2030, cvc: "123" }
};

export async function adminLogin(http: Http): Promise<string> {
	const res = await eventually(async () => {
		const r = await http.post("/api/auth/login", { email: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD });
		return r.status === 200 ? r : null;
	}, 20_000, "admin login");
	return res.body.token;
}

/** Registers, verifies with the token from the delivery log, logs in. */
export async function verifiedCustomer(http: Http, adminToken: string, opts: { verify?: boolean } = {}) {
	const email = `c-${randomUUID().slice(0, 8)}@example.com`;
	const password = "Passw0rd-long";
	const customer = expectStatus(await http.post("/api/auth/register", { email, password, firstName: "Ada", lastName: "Lovelace" }), 201);
	if (opts.verify !== false) {
		const mail = await eventually(async () => {
			const log = await http.get(`/api/admin/notifications?to=${encodeURIComponent(email)}&template=email_verification`, adminToken);
			return log.body?.rows?.[0];
		}, 15_000, `verification email to ${email}`);
		expectStatus(await http.post("/api/auth/verify-email", { token: mail.data.token }), 200);
	}
	const login = expectStatus(await http.post("/api/auth/login", { email, password }), 200);
	return { id: customer.id as string, email, password, token: login.token as string };
}

const categories = new Map<string, string>();

/** An active product with its stock set, ready to sell. */
export async function productInStock(http: Http, adminToken: string, opts: { stock: number; price?: number; currency?: string; name?: string }) {
	let categoryId = categories.get(http.baseUrl);
	if (!categoryId) {
		categoryId = expectStatus(await http.post("/api/categories", { name: `Category ${randomUUID().slice(0, 8)}` }, adminToken), 201).id as string;
		categories.set(http.baseUrl, categoryId);
	}
	const product = expectStatus(
		await http.post(
			"/api/products",
			{ name: opts.name ?? `Product ${randomUUID().slice(0, 8)}`, description: "A thing", price: { amount: opts.price ?? 12999, currency: opts.currency ?? "PLN" }, categoryId, initialStock: opts.stock },
			adminToken
		),
		201
	);
	expectStatus(await http.post(`/api/products/${product.id}/activate`, {}, adminToken), 200);
	// The stock row is made by inventory from product.created: wait until it is there.
	await eventually(async () => (await http.get(`/api/inventory/${product.sku}`, adminToken)).status === 200, 15_000, "stock row");
	return product as { id: string; sku: string; price: { amount: number; currency: string } };
}

export async function stockOf(http: Http, adminToken: string, sku: string) {
	return expectStatus(await http.get(`/api/inventory/${sku}`, adminToken), 200) as { onHand: number; reserved: number; available: number };
}

/** Waits for the place-order saga of an order to end and answers the saga record. */
export async function finishedSaga(http: Http, adminToken: string, sagaId: string, timeoutMs = 30_000) {
	return eventually(async () => {
		const r = await http.get(`/api/admin/sagas/${sagaId}`, adminToken);
		return r.status === 200 && (TERMINAL_STATUSES as readonly string[]).includes(r.body.status) ? r.body : null;
	}, timeoutMs, `saga ${sagaId} to finish`);
}

export const ADDRESS = { recipientName: "Ada Lovelace", street: "Marszałkowska 1", city: "Warszawa", postalCode: "00-950", country: "PL" };

/**
 * What a storefront does before placing an order: ships to an address, picks a shipping
 * method (the first offered unless named) and a payment method. Answers the checkout.
 */
export async function readyCheckout(http: Http, token: string, opts: { paymentMethod?: "card" | "blik" | "paypal"; methodId?: string; address?: typeof ADDRESS } = {}) {
	expectStatus(await http.put("/api/checkout/address", { address: opts.address ?? ADDRESS }, token), 200);
	const methodId = opts.methodId ?? (expectStatus(await http.get("/api/checkout/shipping-methods", token), 200) as any[])[0].id;
	expectStatus(await http.put("/api/checkout/shipping-method", { methodId }, token), 200);
	return expectStatus(await http.put("/api/checkout/payment-method", { method: opts.paymentMethod ?? "card" }, token), 200);
}
