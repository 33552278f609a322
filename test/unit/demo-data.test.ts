import { expect } from "chai";
import { demoBanner } from "../../bin/demo-data";
import { readSettings } from "../../infra/settings";

describe("demo data on start", () => {
	it("loads on an embedded start unless DEMO_DATA=0; a system with servers only with DEMO_DATA=1", () => {
		expect(readSettings({}).demoData).to.equal(true);
		expect(readSettings({ DEMO_DATA: "0" }).demoData).to.equal(false);
		const real = { TRANSPORTER: "amqp://x", DATABASE_URL: "postgres://x", REDIS_URL: "redis://x" };
		expect(readSettings(real).demoData).to.equal(false);
		expect(readSettings({ ...real, DEMO_DATA: "1" }).demoData).to.equal(true);
	});

	it("the banner names the admin login and two requests, never a password that was set in the environment", () => {
		const banner = demoBanner(readSettings({ PORT: "3100" }), 20, false);
		expect(banner).to.include("admin@shop.local / admin-password-1").and.include("curl http://localhost:3100/api/products").and.include("/api/auth/login");
		const secret = demoBanner(readSettings({ ADMIN_PASSWORD: "s3cret-Value" }), 20, true);
		expect(secret).to.not.include("s3cret-Value");
	});
});
