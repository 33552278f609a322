/**
 * `npm run cluster`: every service as a process of its own (two checkout orchestrators) against
 * the real servers, with this test run's namespace, schema prefix and Redis prefix. It serves a
 * checkout through its gateway, and one SIGINT (Ctrl-C) stops every process it started.
 */
import { expect } from "chai";
import { ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { eventually } from "../support/cluster";
import { expectStatus, Http } from "../support/http";
import { adminLogin, CARDS, finishedSaga, productInStock, readyCheckout, verifiedCustomer } from "../support/shop";

const root = path.join(__dirname, "..", "..");

function alive(pid: number): boolean {
	try {
		process.kill(pid, 0);
		return true;
	} catch {
		return false;
	}
}

describe("npm run cluster: the whole system as local processes", function () {
	this.timeout(600_000);
	let cluster: ChildProcess | null = null;
	let out = "";
	const logDir = fs.mkdtempSync(path.join(os.tmpdir(), "cluster-logs-"));
	const port = 20_000 + Math.floor(Math.random() * 20_000);

	after(async () => {
		if (cluster && cluster.exitCode === null) cluster.kill("SIGKILL");
		fs.rmSync(logDir, { recursive: true, force: true });
	});

	it("starts one process per service (two checkouts), serves a checkout, and one SIGINT stops them all", async () => {
		cluster = spawn(process.execPath, ["--import", "tsx", "bin/cluster.ts"], {
			cwd: root,
			// Info level: each process logs when its broker (every service in it) has started.
			env: { ...process.env, LOG_LEVEL: "info", PORT: String(port), CLUSTER_LOG_DIR: logDir, WEBHOOK_TARGET_URL: `http://127.0.0.1:${port}` },
			stdio: ["ignore", "pipe", "pipe"]
		});
		cluster.stdout!.on("data", b => (out += b.toString()));
		cluster.stderr!.on("data", b => (out += b.toString()));
		const exited = new Promise<number | null>(resolve => cluster!.once("exit", code => resolve(code)));

		const pids = await eventually(() => {
			const found = [...out.matchAll(/cluster: started (\S+) \(pid (\d+)\)/g)].map(m => ({ name: m[1]!, pid: Number(m[2]) }));
			return found.length === 14 ? found : null;
		}, 60_000, "14 processes started");
		expect(pids.map(p => p.name)).to.include.members(["api", "ops", "checkout-1", "checkout-2", "orders", "payments", "inventory"]);

		const http = new Http(`http://127.0.0.1:${port}`);
		await eventually(async () => (await http.get("/api/health/ready").catch(() => null))?.status === 200, 300_000, `the gateway ready (output: ${out.slice(-1500)})`);
		// The gateway can be ready before the last process has started its services (a call to one not
		// yet there is a retryable 503): wait until every process says its services started.
		await eventually(() => {
			const logs = fs.readdirSync(logDir).filter(f => f.endsWith(".log"));
			const started = logs.filter(f => fs.readFileSync(path.join(logDir, f), "utf8").includes("started successfully"));
			return started.length === 14;
		}, 300_000, "every process's services started");
		const admin = await adminLogin(http);
		const methodId = expectStatus(
			await http.post("/api/admin/shipping-methods", { name: `Van ${process.pid}`, carrier: "Shop van", price: { amount: 1500, currency: "PLN" }, countries: ["PL"], deliveryDays: { min: 1, max: 6 } }, admin),
			201
		).id;
		const p = await productInStock(http, admin, { stock: 3, price: 4000 });
		const c = await verifiedCustomer(http, admin);
		expectStatus(await http.post("/api/cart/items", { productId: p.id, quantity: 1 }, c.token), 200);
		// The gateway is ready before every service is: the checkout processes may still be migrating.
		await eventually(async () => (await http.get("/api/checkout", c.token)).status === 200, 180_000, "the checkout service answering");
		await readyCheckout(http, c.token, { paymentMethod: "card", methodId });
		const placed = expectStatus(await http.post("/api/checkout/place", { paymentDetails: CARDS.ok }, c.token), 202);
		expect((await finishedSaga(http, admin, placed.checkout.sagaId, 60_000)).status).to.equal("completed");
		expect(expectStatus(await http.get(`/api/orders/${placed.orderId}`, c.token), 200).status).to.equal("confirmed");

		// Each process's output is in its own file, and on the terminal with its name in front.
		expect(fs.readdirSync(logDir).sort()).to.include.members(["api.log", "checkout-1.log", "checkout-2.log", "ops.log"]);
		expect(out).to.match(/^api\s+\| /m);

		cluster.kill("SIGINT");
		expect(await exited).to.equal(0);
		expect(out).to.contain("cluster: every process stopped");
		expect(pids.filter(p => alive(p.pid)).map(p => p.name), "processes still running").to.deep.equal([]);
	});
});
