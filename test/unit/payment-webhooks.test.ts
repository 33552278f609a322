/** The webhook signature and the simulated BLIK bank, without a broker: pure functions and a local HTTP listener. */
import { expect } from "chai";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { signWebhook, verifyWebhook } from "../../contracts/webhook";
import { BLIK_CODES, SimulatedCardProvider } from "../../services/payments/provider";

const SECRET = "unit-secret";

describe("payment webhooks", () => {
	describe("signature", () => {
		const raw = JSON.stringify({ eventId: "e1", transactionId: "sim_blik_1", status: "approved" });

		it("the HMAC-SHA256 of the raw body under the secret verifies, in either hex case", () => {
			const sig = signWebhook(raw, SECRET);
			expect(sig).to.match(/^sha256=[0-9a-f]{64}$/);
			expect(verifyWebhook(Buffer.from(raw), sig, SECRET)).to.equal(true);
			expect(verifyWebhook(raw, "sha256=" + sig.slice(7).toUpperCase(), SECRET)).to.equal(true);
		});

		it("anything else is refused: no header, no body, another secret, another body, a truncated or bare digest, no secret configured", () => {
			const sig = signWebhook(raw, SECRET);
			expect(verifyWebhook(raw, undefined, SECRET)).to.equal(false);
			expect(verifyWebhook(undefined, sig, SECRET)).to.equal(false);
			expect(verifyWebhook(raw, signWebhook(raw, "other"), SECRET)).to.equal(false);
			expect(verifyWebhook(raw + " ", sig, SECRET)).to.equal(false);
			expect(verifyWebhook(raw, sig.slice(0, -2), SECRET)).to.equal(false);
			expect(verifyWebhook(raw, sig.slice(7), SECRET)).to.equal(false);
			expect(verifyWebhook(raw, [sig] as unknown, SECRET)).to.equal(false);
			expect(verifyWebhook(raw, signWebhook(raw, ""), "")).to.equal(false);
		});
	});

	describe("the simulated BLIK bank", () => {
		let server: http.Server;
		const received: Array<{ body: string; signature: string | undefined }> = [];
		let answer = 200;
		let provider: SimulatedCardProvider;

		before(async () => {
			server = http.createServer((req, res) => {
				let body = "";
				req.on("data", c => (body += c));
				req.on("end", () => {
					received.push({ body, signature: req.headers["x-signature"] as string | undefined });
					res.statusCode = answer;
					res.end();
				});
			});
			await new Promise<void>(r => server.listen(0, "127.0.0.1", () => r()));
			const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
			provider = new SimulatedCardProvider(undefined, { url: () => url, secret: SECRET, delayMs: 10, approveUrl: "https://paypal.example/approve" });
		});
		after(() => {
			provider.close();
			server.close();
		});

		const waitFor = async (n: number) => {
			for (let i = 0; i < 200 && received.length < n; i++) await new Promise(r => setTimeout(r, 20));
			return received;
		};

		it("777123 approves and 777000 rejects with a signed webhook; another code never answers", async () => {
			received.length = 0;
			const ok = await provider.startBlik(BLIK_CODES.approves, { amount: 100, currency: "PLN" });
			const no = await provider.startBlik(BLIK_CODES.rejects, { amount: 100, currency: "PLN" });
			await provider.startBlik("111111", { amount: 100, currency: "PLN" });
			const got = await waitFor(2);
			await new Promise(r => setTimeout(r, 100));
			expect(received).to.have.length(2);
			const bodies = got.map(g => JSON.parse(g.body));
			expect(bodies.find(b => b.status === "approved").transactionId).to.equal(ok.ok && ok.providerRef);
			expect(bodies.find(b => b.status === "rejected").transactionId).to.equal(no.ok && no.providerRef);
			for (const g of got) expect(verifyWebhook(g.body, g.signature, SECRET)).to.equal(true);
		});

		it("a webhook the gateway fails to take (5xx) is sent again with the same event id", async () => {
			received.length = 0;
			answer = 503;
			await provider.startBlik(BLIK_CODES.approves, { amount: 100, currency: "PLN" });
			await waitFor(1);
			answer = 200;
			const got = await waitFor(2);
			expect(got.length).to.be.at.least(2);
			expect(JSON.parse(got[1]!.body).eventId).to.equal(JSON.parse(got[0]!.body).eventId);
		});

		it("PayPal answers where the buyer approves, carrying the token", async () => {
			const r = await provider.startPayPal({ amount: 100, currency: "PLN" }, { returnUrl: "https://shop/r", cancelUrl: "https://shop/c", idempotencyKey: "k1" });
			expect(r.ok).to.equal(true);
			if (r.ok) expect(r.redirectUrl).to.equal(`https://paypal.example/approve?token=${r.providerRef}`);
			const again = await provider.startPayPal({ amount: 100, currency: "PLN" }, { returnUrl: "https://shop/r", cancelUrl: "https://shop/c", idempotencyKey: "k1" });
			expect(again.ok && r.ok && again.providerRef === r.providerRef).to.equal(true);
		});
	});
});
