/** docker-compose.yml and the Dockerfile stay in step with the code. */
import { expect } from "chai";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { SERVICE_NAMES } from "../../services";

const root = path.join(__dirname, "..", "..");

describe("deployment files", () => {
	it("docker-compose.yml is valid and runs every service with the servers it needs", function () {
		const probe = spawnSync("docker-compose", ["version"], { encoding: "utf8" });
		if (probe.error) throw new Error("docker-compose is not installed (Debian package docker-compose; .ci/run installs it)");
		const config = execFileSync("docker-compose", ["-f", path.join(root, "docker-compose.yml"), "config"], { encoding: "utf8", env: { ...process.env, JWT_SECRET: "x" } });
		for (const name of [...SERVICE_NAMES, "rabbitmq", "postgres", "redis"]) {
			expect(config, name).to.match(new RegExp(`^  ${name}:$`, "m"));
		}
		for (const name of SERVICE_NAMES) {
			expect(config).to.match(new RegExp(`SERVICES: ${name}\\b`));
		}
		expect(config).to.include("--appendonly").and.include("--appendfsync").and.include("everysec");
	});

	it("the Dockerfile copies every source folder a service loads", () => {
		const dockerfile = fs.readFileSync(path.join(root, "Dockerfile"), "utf8");
		for (const dir of ["bin", "contracts", "infra", "mixins", "migrations", "sagas", "services"]) {
			expect(dockerfile).to.match(new RegExp(`COPY ${dir} `));
		}
		for (const name of SERVICE_NAMES) expect(fs.existsSync(path.join(root, "services", `${name}.service.ts`)), name).to.equal(true);
	});
});
