/** The saga store's suite (test/support/saga-store-suite.ts) against the machine's single Redis. */
import Redis from "ioredis";
import { sagaStoreSuite } from "../support/saga-store-suite";

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

sagaStoreSuite("Redis saga store (real Redis)", () => ({
	connect: () => new Redis(url),
	keys: (redis, pattern) => (redis as Redis).keys(pattern)
}));
