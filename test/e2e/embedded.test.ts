/**
 * The embedded default: `npm start` with no server configured runs the whole shop in one
 * process (local transport, PGlite, in-process saga store), an empty first start shows a demo
 * shop, and a checkout works through it.
 */
import { expect } from "chai";
import { spawn, ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { eventually } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { CARDS, finishedSaga, productInStock, readyCheckout, stockOf, verifiedCustomer } from "../support/shop";

describe("the embedded default (`npm start` with no environment)", function () {
	this.timeout(180_000);
	const port = String(33000 + Math.floor(Math.random() * 2000));
	const http = new Http(`http://127.0.0.1:${port}`);
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "saga-commerce-embedded-"));
	let shop: ChildProcess;
	const output: string[] = [];

	before(async () => {
		// Only what any shell has: no TRANSPORTER, DATABASE_URL, REDIS_URL, nor the test run's settings.
		const env = { PATH: process.env.PATH!, HOME: process.env.HOME ?? os.tmpdir(), PORT: port, DATA_DIR: dataDir };
		shop = spawn("npm", ["start"], { cwd: path.join(__dirname, "..", ".."), env, stdio: ["ignore", "pipe", "pipe"], detached: true });
		shop.stdout!.on("data", b => output.push(b.toString()));
		shop.stderr!.on("data", b => output.push(b.toString()));
		await eventually(async () => (await http.get("/api/health/live")).status === 200, 120_000, "the embedded shop to answer").catch(err => {
			throw new Error(`${err.message}\n${output.join("").slice(-3000)}`);
		});
	});

	after(async () => {
		if (shop && shop.exitCode === null) {
			process.kill(-shop.pid!, "SIGTERM");
			await new Promise(r => shop.once("exit", r));
		}
		fs.rmSync(dataDir, { recursive: true, force: true });
	});

	it("an empty first start loads a demo shop: products in stock to browse, said in the log with the admin login and curl lines", async () => {
		const list = await eventually(async () => {
			const r = await http.get("/api/products?pageSize=100");
			return r.status === 200 && r.body.total >= 20 && r.body.rows.filter((p: any) => p.available > 0).length >= 19 ? r.body : null;
		}, 90_000, "the demo products with their stock");
		expect(list.rows.every((p: any) => p.status === "active" && p.vendorId)).to.equal(true);
		const soldOut = list.rows.find((p: any) => p.name === "Garden gloves");
		expect(soldOut).to.include({ available: 0 });
		const tree = expectStatus(await http.get("/api/categories"), 200);
		expect(tree.map((c: any) => c.name).sort()).to.deep.equal(["Garden", "Home", "Kitchen"]);
		const kitchen = tree.find((c: any) => c.name === "Kitchen");
		const inKitchen = expectStatus(await http.get(`/api/products?categoryId=${kitchen.id}&pageSize=100`), 200);
		expect(inKitchen.total).to.equal(10);
		const log = output.join("");
		expect(log).to.include("Demo shop loaded").and.include("admin@shop.local / admin-password-1").and.include(`curl http://localhost:${port}/api/products`);
		const admin = expectStatus(await http.post("/api/auth/login", { email: "admin@shop.local", password: "admin-password-1" }), 200).token;
		expect(expectStatus(await http.get("/api/admin/promotions", admin), 200).rows.map((p: any) => p.code)).to.include("DEMO10");
		expect(expectStatus(await http.get("/api/admin/addons", admin), 200).rows.map((a: any) => a.name)).to.include("Knife sharpening");
	});

	it("serves the API and takes an order from cart to confirmed", async () => {
		// The gateway listens before every service has started: the first answers may be 503.
		const login = await eventually(async () => {
			const r = await http.post("/api/auth/login", { email: "admin@shop.local", password: "admin-password-1" });
			return r.status === 200 ? r : null;
		}, 60_000, "the admin to log in");
		const admin = login.body.token;
		const p = await productInStock(http, admin, { stock: 3, price: 4999 });
		const c = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, c.token), 200);
		await readyCheckout(http, c.token);
		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
		const saga = await finishedSaga(http, admin, placed.checkout.sagaId);
		expect(saga.status).to.equal("completed");
		expect(expectStatus(await http.get(`/api/orders/${placed.orderId}`, c.token), 200).status).to.equal("confirmed");
		expect(await stockOf(http, admin, p.sku)).to.include({ reserved: 1, available: 2 });
		expect(fs.existsSync(path.join(dataDir, "pglite")), "data kept under DATA_DIR").to.equal(true);
	});
});
