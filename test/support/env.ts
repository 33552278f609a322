/**
 * Loaded by mocha before any test file (see .mocharc.json). Points the system at the real
 * RabbitMQ, Postgres and Redis of the machine, with a namespace, schema prefix and key
 * prefix of this run's own (and of each worker's own under `mocha --parallel`), so runs never
 * collide. Override any of them from the shell.
 */
import { randomBytes } from "node:crypto";

const run = process.env.TEST_RUN_ID ?? `t${Date.now().toString(36)}${randomBytes(2).toString("hex")}`;
process.env.TEST_RUN_ID = run;
// Every process of one run shares its base id (the root hooks clean up everything under it).
process.env.TEST_RUN_BASE ??= run;
// `mocha --parallel`: a worker inherits the environment the main process made here; it works in a
// namespace, schemas and key prefix of its own (`<base>w<worker>`), so files of two workers never meet.
const worker = process.env.MOCHA_WORKER_ID;
if (worker !== undefined && !run.endsWith(`w${worker}`)) {
	const mine = `${run}w${worker}`;
	for (const key of ["TEST_RUN_ID", "NAMESPACE", "SCHEMA_PREFIX", "REDIS_PREFIX"]) {
		if (process.env[key]?.includes(run)) process.env[key] = process.env[key]!.replace(run, mine);
	}
}
process.env.TRANSPORTER ??= "amqp://guest:guest@127.0.0.1:5672";
process.env.TEST_DATABASE_ADMIN_URL ??= "postgres://postgres@127.0.0.1:5432/postgres";
process.env.DATABASE_URL ??= "postgres://postgres@127.0.0.1:5432/saga_commerce_test";
process.env.REDIS_URL ??= "redis://127.0.0.1:6379";
process.env.NAMESPACE ??= run;
process.env.SCHEMA_PREFIX ??= `${run}_`;
process.env.REDIS_PREFIX ??= `${run}:`;
process.env.LOG_LEVEL ??= "warn";
process.env.JWT_SECRET ??= "test-secret-" + run;
process.env.ADMIN_EMAIL ??= "admin@test.local";
process.env.ADMIN_PASSWORD ??= "Admin-password-1";
process.env.SAGA_RECOVERY_INTERVAL_MS ??= "500";
process.env.SAGA_LEASE_MS ??= "3000";
process.env.PORT ??= "0";
process.env.BCRYPT_ROUNDS ??= "4";
// Tests act as many customers from one address; the rate-limit test starts a gateway with low limits of its own.
process.env.RATE_LIMIT_MAX ??= "1000000";
process.env.RATE_LIMIT_AUTH_MAX ??= "1000000";
process.env.WEBHOOK_SECRET ??= "test-webhook-secret-" + run;
process.env.BLIK_ANSWER_DELAY_MS ??= "200";
// BLIK / PayPal payments nobody answers give up this soon in tests (the default is two minutes).
process.env.PAYMENT_DEADLINE_MS ??= "4000";
