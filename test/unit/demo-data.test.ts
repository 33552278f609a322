import { expect } from "chai";
import { demoBanner, wantsDemoData } from "../../bin/demo-data";
import { readSettings } from "../../mixins/settings";

describe("demo data on start", () => {
	it("loads on an embedded start unless DEMO_DATA=0; a system with servers only with DEMO_DATA=1", () => {
		expect(wantsDemoData(readSettings({}), {})).to.equal(true);
		expect(wantsDemoData(readSettings({}), { DEMO_DATA: "0" })).to.equal(false);
		const real = { TRANSPORTER: "amqp://x", DATABASE_URL: "postgres://x", REDIS_URL: "redis://x" };
		expect(wantsDemoData(readSettings(real), real)).to.equal(false);
		expect(wantsDemoData(readSettings(real), { ...real, DEMO_DATA: "1" })).to.equal(true);
	});

	it("the banner names the admin login and two requests, never a password that was set in the environment", () => {
		const banner = demoBanner(readSettings({ PORT: "3100" }), 20, {});
		expect(banner).to.include("admin@shop.local / admin-password-1").and.include("curl http://localhost:3100/api/products").and.include("/api/auth/login");
		const secret = demoBanner(readSettings({ ADMIN_PASSWORD: "s3cret-Value" }), 20, { ADMIN_PASSWORD: "s3cret-Value" });
		expect(secret).to.not.include("s3cret-Value");
	});
});
