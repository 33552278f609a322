/**
 * What one round trip costs on this machine when the other side was idle, against the same round
 * trip back to back: to another Node process over TCP, to PostgreSQL (one prepared statement), to
 * Redis (PING), through RabbitMQ (a message to a queue this process consumes, with publisher
 * confirms off), and a Moleculer call to another process over RabbitMQ with this project's
 * transporter (an action that answers at once: two trips through RabbitMQ). One checkout alone
 * is a chain of such round trips, each to a process that sat idle since the last checkout's; the
 * gap before each round trip (0, 1, 10, 50 ms) shows what waking it costs. Wall time, p50 and p90 over 200 round trips each. Needs the three servers (DATABASE_URL,
 * REDIS_URL, AMQP_URL, or the ones on 127.0.0.1).
 *
 *   npm run bench:wake
 */
import { fork } from "node:child_process";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import amqp from "amqplib";
import Redis from "ioredis";
import pg from "pg";
import { AMQP_URL, benchBroker } from "./processes";

const GAPS_MS = [0, 1, 10, 50];
const N = Number(process.env.BENCH_WAKE_N ?? 200);
const PORT = Number(process.argv[3] ?? 39_000 + Math.floor(Math.random() * 500));

/** The brokers' own namespace. */
const NAMESPACE = process.argv[4] ?? `wake-${process.pid}`;

/** The child: echoes every byte it receives, and runs an action that answers at once. */
if (process.argv[2] === "echo") {
	void benchBroker(NAMESPACE, "echo", "wake").then(() => net.createServer(s => s.on("data", d => s.write(d))).listen(PORT, "127.0.0.1", () => process.send?.("ready")));
} else {
	main().catch(err => {
		console.error(err);
		process.exit(1);
	});
}

async function measure(what: string, roundTrip: () => Promise<unknown>) {
	for (let i = 0; i < 50; i++) await roundTrip();
	const cells: string[] = [];
	for (const gap of GAPS_MS) {
		const wall: number[] = [];
		for (let i = 0; i < N; i++) {
			if (gap > 0) await sleep(gap);
			const t0 = process.hrtime.bigint();
			await roundTrip();
			wall.push(Number(process.hrtime.bigint() - t0) / 1000);
		}
		wall.sort((a, b) => a - b);
		const at = (p: number) => wall[Math.min(wall.length - 1, Math.floor((wall.length * p) / 100))]!.toFixed(0);
		cells.push(`${`${at(50)} / ${at(90)}`.padStart(11)}`);
	}
	console.log(`  ${what.padEnd(48)} ${cells.join("  ")}`);
}

async function main() {
	const child = fork(__filename, ["echo", String(PORT), NAMESPACE], { env: { ...process.env }, execArgv: process.execArgv });
	await new Promise(resolve => child.once("message", resolve));
	const broker = await benchBroker(NAMESPACE, "caller");
	await broker.waitForServices(["wake"], 30_000);
	const socket = net.connect(PORT, "127.0.0.1");
	socket.setNoDelay(true);
	await new Promise(resolve => socket.once("connect", resolve));

	const db = new pg.Client(process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
	await db.connect();
	const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
	const conn = await amqp.connect(AMQP_URL);
	const channel = await conn.createChannel();
	const { queue } = await channel.assertQueue("", { exclusive: true, autoDelete: true });
	let delivered: (() => void) | null = null;
	await channel.consume(queue, () => delivered?.(), { noAck: true });

	try {
		console.log(`round trip wall time in µs, p50 / p90 over ${N}, after an idle gap of ${GAPS_MS.map(g => `${g} ms`).join(" · ")}:`);
		await measure("TCP to another Node process (echo)", () => new Promise(resolve => (socket.once("data", resolve), socket.write("x"))));
		await measure("PostgreSQL, one prepared statement", () => db.query({ name: "wake", text: "SELECT oid FROM pg_class WHERE relname = $1", values: ["pg_type"] }));
		await measure("Redis, PING", () => redis.ping());
		await measure("RabbitMQ, publish → consume (same process)", () => new Promise<void>(resolve => ((delivered = resolve), channel.sendToQueue(queue, Buffer.from("x")))));
		await measure("Moleculer call over RabbitMQ (answers at once)", () => broker.call("wake.ping"));
	} finally {
		socket.destroy();
		await broker.stop();
		child.kill("SIGTERM");
		await db.end();
		redis.disconnect();
		await conn.close();
	}
}
