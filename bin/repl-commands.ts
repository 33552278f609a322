/**
 * The operator's commands of the REPL (`npm run repl`, `npm start -- --repl`), beside
 * Moleculer's own. Each asks an action (checkout's saga operations, `ops.*`), the same the
 * admin routes call, and prints a plain-text answer:
 *
 *   sagas [--state s] [--type t] [--status s]   the newest sagas as a table
 *   saga <id>                                   one saga as a timeline
 *   saga retry <id> · saga compensate <id>      an operator's decision on a saga
 *   order <orderNumber|orderId>                 where is this order, and why
 *   dlq [queue]                                 dead letters per queue, with their error
 *   dlq replay <queue|all> [ids…]               send dead letters back to their queue
 */
import type { ServiceBroker } from "moleculer";

type Print = (text: string) => void;

/** Columns padded to their widest cell. */
export function table(rows: Array<Record<string, unknown>>): string {
	if (rows.length === 0) return "(none)";
	const cols = [...new Set(rows.flatMap(r => Object.keys(r)))];
	const cell = (v: unknown) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
	const widths = cols.map(c => Math.max(c.length, ...rows.map(r => cell(r[c]).length)));
	const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
	return [line(cols), line(widths.map(w => "-".repeat(w))), ...rows.map(r => line(cols.map(c => cell(r[c]))))].join("\n");
}

const time = (iso: string | undefined) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "");

export function formatSagas(res: { rows: any[]; total: number }): string {
	const rows = res.rows.map(r => ({ id: r.id, type: r.type, status: r.status, state: r.state, attempts: r.attempts, order: r.data?.orderNumber ?? r.data?.orderId ?? "", updated: time(r.updatedAt) }));
	return `${table(rows)}\n${res.total} saga(s)${res.total > rows.length ? `, newest ${rows.length} shown` : ""}`;
}

/** Each recorded change of a saga, with the time since the one before. */
export function formatTimeline(rec: any): string {
	const head = [
		`saga ${rec.id} (${rec.type})`,
		`status ${rec.status} · state ${rec.state} · step ${rec.step} ${rec.stepStatus} · attempts ${rec.attempts}`,
		`correlation id ${rec.correlationId ?? "-"} · created ${time(rec.createdAt)} · updated ${time(rec.updatedAt)}`
	];
	if (rec.failure) head.push(`failure: ${rec.failure.step}: ${rec.failure.message}${rec.failure.type ? ` (${rec.failure.type})` : ""}`);
	if (rec.parkedReason) head.push(`parked: ${rec.parkedReason}`);
	if (rec.wait) head.push(`waiting for ${rec.wait.events.join(" / ")}${rec.wait.until ? ` until ${new Date(rec.wait.until).toISOString()}` : ""}`);
	let prev: number | null = null;
	const rows = (rec.history ?? []).map((h: any) => {
		const at = Date.parse(h.at);
		const d = h.detail ?? {};
		const row = {
			at: time(h.at),
			"+ms": prev === null ? "" : String(at - prev),
			state: h.state,
			event: h.event,
			detail: d.message ? `${d.message}${d.type ? ` (${d.type})` : ""}` : d.reason ? String(d.reason) : d.retryInMs !== undefined ? `retry in ${d.retryInMs} ms` : ""
		};
		prev = at;
		return row;
	});
	return `${head.join("\n")}\n\n${table(rows)}`;
}

export function formatOrder(a: any): string {
	const o = a.order;
	const out = [`order ${o.orderNumber} (${o.id}) · ${o.status} · total ${o.total.amount / 100} ${o.total.currency} · placed ${time(o.createdAt)}`];
	out.push(`correlation id ${a.correlationId ?? "-"}`);
	out.push("", "status history:", table(o.statusHistory.map((h: any) => ({ at: time(h.at), status: h.status, reason: h.reason ?? "" }))));
	out.push("", "sagas:", table(a.sagas.map((s: any) => ({
		id: s.id, type: s.type, status: s.status, "current step": `${s.state} (${s.stepStatus})`, attempts: s.attempts,
		why: s.parkedReason ?? (s.failure ? `${s.failure.step}: ${s.failure.message}` : s.waitingFor ? `waiting for ${s.waitingFor.join(" / ")}` : "")
	}))));
	const p = a.payment;
	out.push("", `payment: ${p ? `${p.method} ${p.status}${p.transactionId ? ` · transaction ${p.transactionId}` : ""}${p.captured ? ` · captured ${p.captured.amount}` : ""}${p.refunded?.amount ? ` · refunded ${p.refunded.amount}` : ""}` : "none"}`);
	out.push(`reservation: ${a.reservation.length ? a.reservation.map((r: any) => `${r.sku} × ${r.quantity} ${r.status}`).join(", ") : "none"}`);
	out.push("", "last events:", table(a.events.map((e: any) => ({ at: time(e.at), event: e.event, from: e.service, sent: e.sent ? "yes" : "waiting", "correlation id": e.correlationId ?? "" }))));
	return out.join("\n");
}

export function formatDeadLetters(res: any): string {
	if (!res.deadLetterQueue) return "No dead-letter queue: without RabbitMQ (embedded mode) nothing is dead-lettered.";
	const perQueue = table(Object.entries(res.queues).map(([queue, n]) => ({ queue, messages: n })));
	const rows = table(res.rows.map((r: any) => ({ id: r.id, queue: r.queue, event: r.event ?? "", attempts: r.attempts ?? "", error: r.error ? `${r.error.message ?? ""}${r.error.type ? ` (${r.error.type})` : ""}` : "(not recorded)", "correlation id": r.correlationId ?? "" })));
	return `${res.total} dead letter(s) in ${res.deadLetterQueue}\n\n${perQueue}\n\n${rows}`;
}

/** The words after the command name, as typed (the REPL's parser keeps only one operand per argument). */
function words(args: any, command: string): string[] {
	const raw = String(args.rawCommand ?? "").trim().split(/\s+/).filter(Boolean);
	return raw[0] === command ? raw.slice(1) : raw;
}

export function operatorCommands(print: Print = text => console.log(text)) {
	const fail = (err: any) => print(`${err?.code ? `${err.code} ` : ""}${err?.type ? `${err.type}: ` : ""}${err?.message ?? err}`);
	const guarded = (fn: (broker: ServiceBroker, args: any) => Promise<void>) => (broker: ServiceBroker, args: any) => fn(broker, args).catch(fail);
	return [
		{
			command: "sagas",
			description: "The newest sagas as a table (--state s, --type t, --status running|compensating|completed|compensated|parked)",
			options: [
				{ option: "--state <state>", description: "only sagas in this state (e.g. compensating_reserve_stock)" },
				{ option: "--type <type>", description: "only this saga type (place-order, cancel-order)" },
				{ option: "--status <status>", description: "only this status" }
			],
			action: guarded(async (broker, args) => {
				const o = args.options ?? {};
				const res: any = await broker.call("checkout.listSagas", { state: o.state, type: o.type, status: o.status, pageSize: 50 });
				print(formatSagas(res));
			})
		},
		{
			command: "saga <idOrAction> [id]",
			description: "saga <id>: one saga as a timeline · saga retry <id>: resume a parked saga · saga compensate <id>: give up and undo",
			action: guarded(async (broker, args) => {
				const [first, second] = words(args, "saga");
				if (first === "retry" || first === "compensate") {
					if (!second) return print(`usage: saga ${first} <id>`);
					const rec: any = await broker.call(first === "retry" ? "checkout.retrySaga" : "checkout.compensateSaga", { id: second });
					return print(`${rec.id}: ${rec.status} (${rec.state})`);
				}
				print(formatTimeline(await broker.call("checkout.getSaga", { id: first })));
			})
		},
		{
			command: "order <order>",
			description: "Where is this order and why: status and history, its sagas' current step, payment, reservation, last events (order number or id)",
			action: guarded(async (broker, args) => {
				const [order] = words(args, "order");
				print(formatOrder(await broker.call("ops.order", { order })));
			})
		},
		{
			command: "dlq [queueOrReplay] [more]",
			description: "dlq [queue]: dead letters per queue with their error · dlq replay <queue|all> [ids…]: send them back to their queue",
			action: guarded(async (broker, args) => {
				const [first, queue, ...ids] = words(args, "dlq");
				if (first === "replay") {
					if (!queue) return print("usage: dlq replay <queue|all> [ids…]");
					const res: any = await broker.call("ops.replayDeadLetters", { queue: queue === "all" ? undefined : queue, ids: ids.length ? ids : undefined });
					return print(`replayed ${res.replayed.length} message(s)${res.replayed.length ? `: ${res.replayed.map((r: any) => `${r.id} → ${r.queue}`).join(", ")}` : ""}; ${res.remaining} left in the dead-letter queue`);
				}
				print(formatDeadLetters(await broker.call("ops.deadLetters", { queue: first })));
			})
		}
	];
}
