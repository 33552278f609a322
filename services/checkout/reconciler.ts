/**
 * The reconciler: what Postgres says is under way, held against the saga store. When Redis lost
 * its data (restarted without persistence, flushed, failed over to an empty replica) the sagas are
 * gone but their traces in Postgres are not — an order pending, stock reserved, a payment
 * authorized, a cart locked. Nothing would ever move them again. Every RECONCILE_INTERVAL_MS one
 * checkout replica (a Postgres advisory lock: Redis may be the thing that is gone) looks for
 * - orders still before the pivot (pending, awaiting_payment) placed more than RECONCILE_AFTER_MS ago,
 * - carts locked by a checkout for longer than that,
 * and, for each whose saga is not in the store, finishes or compensates it through the
 * participants' idempotent actions (keys `<sagaId>:reconcile:<what>`, so a pass interrupted
 * half-way is simply done again by the next):
 *
 * - **finish** when the order's payment is authorized: the saga authorizes last before its point
 *   of no return, and its compensations void the payment first — an authorized payment means
 *   every earlier step (cart, order, promo code, stock) is done and nothing was undone. The
 *   customer has been promised the money's use; the order is confirmed and the cart checked out.
 * - **compensate** otherwise (no payment, one refused, one still waiting for the bank): void or
 *   cancel the payment, release the stock, give the code's use back, fail the order
 *   (`cancelled`), unlock the cart. The details the saga needed to go on (the card token, the
 *   BLIK code) were in the lost record only.
 * - a locked cart whose saga is gone: checked out when its order was confirmed, otherwise (no
 *   order, or one that ended) unlocked; a cart whose order is still pending is the order's business.
 *
 * A store that cannot be read makes the pass stop at once: a saga that merely cannot be seen is
 * never compensated.
 */
import type { Knex } from "knex";
import type { SagaStore } from "../../sagas";

export interface ReconcileDeps {
	knex: Knex;
	store: SagaStore;
	call<T = any>(action: string, params: Record<string, unknown>): Promise<T>;
	logger: { info(...args: unknown[]): void; warn(...args: unknown[]): void };
	afterMs: number;
	/** The embedded mode: one process, one PGlite connection — no lock (a transaction held over the pass would starve the services it calls). */
	singleProcess?: boolean;
}

export interface ReconcileReport {
	/** false: another replica holds the lock, this one did nothing. */
	ran: boolean;
	ordersChecked: number;
	finished: number;
	compensated: number;
	cartsCheckedOut: number;
	cartsUnlocked: number;
	failed: number;
}

interface StaleOrder {
	orderId: string;
	sagaId: string | null;
	cartId: string | null;
	status: string;
}

interface LockedCart {
	cartId: string;
	sagaId: string;
}

const LOCK = "checkout:reconciler";
const REASON = "Its checkout was lost (the saga store lost its data); reconciled";

export async function reconcile(deps: ReconcileDeps): Promise<ReconcileReport> {
	const report: ReconcileReport = { ran: false, ordersChecked: 0, finished: 0, compensated: 0, cartsCheckedOut: 0, cartsUnlocked: 0, failed: 0 };
	if (deps.singleProcess) {
		report.ran = true;
		await pass(deps, report);
		return report;
	}
	await deps.knex.transaction(async trx => {
		const lock = await trx.raw("SELECT pg_try_advisory_xact_lock(hashtext(?)) AS ok", [LOCK]);
		if (!(lock.rows ?? lock)[0]?.ok) return;
		report.ran = true;
		await pass(deps, report);
	});
	return report;
}

async function pass(deps: ReconcileDeps, report: ReconcileReport) {
	const { call, store, logger } = deps;
	const missing = async (sagaId: string | null) => !sagaId || (await store.get(sagaId)) === null;

	const orders = await call<StaleOrder[]>("orders.listStale", { olderThanMs: deps.afterMs });
	for (const order of orders) {
		report.ordersChecked++;
		if (!(await missing(order.sagaId))) continue;
		const sagaId = order.sagaId ?? order.orderId;
		const key = (what: string) => `${sagaId}:reconcile:${what}`;
		try {
			const payment = await call<any>("payments.get", { orderId: order.orderId }).catch(err => {
				if (err?.code === 404) return null;
				throw err;
			});
			if (payment?.status === "authorized") {
				await call("orders.confirm", { orderId: order.orderId, paymentId: payment.paymentId ?? payment.id ?? null, idempotencyKey: key("confirm") });
				if (order.cartId) await call("carts.checkout", { cartId: order.cartId, sagaId, orderId: order.orderId, idempotencyKey: key("checkout") });
				report.finished++;
				logger.info(`Reconciler: order ${order.orderId} (${order.status}, payment authorized) had no saga; finished it: confirmed, cart checked out`);
			} else {
				await call("payments.void", { orderId: order.orderId, reason: REASON, idempotencyKey: key("void") });
				await call("inventory.release", { orderId: order.orderId, reason: REASON, idempotencyKey: key("release") });
				await call("promotions.release", { orderId: order.orderId, reason: REASON.slice(0, 200), idempotencyKey: key("releasePromotion") });
				await call("orders.fail", { orderId: order.orderId, reason: REASON, code: "SAGA_LOST", idempotencyKey: key("fail") });
				if (order.cartId && order.sagaId) await call("carts.unlock", { cartId: order.cartId, sagaId: order.sagaId, idempotencyKey: key("unlock") });
				report.compensated++;
				logger.info(`Reconciler: order ${order.orderId} (${order.status}, payment ${payment?.status ?? "none"}) had no saga; compensated it: payment voided, stock and promo code released, order cancelled, cart unlocked`);
			}
		} catch (err) {
			report.failed++;
			logger.warn(`Reconciler: order ${order.orderId} could not be reconciled now (the next pass tries again): ${(err as Error).message}`);
		}
	}

	const carts = await call<LockedCart[]>("carts.listLocked", { olderThanMs: deps.afterMs });
	const lost: LockedCart[] = [];
	for (const cart of carts) if (await missing(cart.sagaId)) lost.push(cart);
	if (lost.length === 0) return;
	const placed = await call<StaleOrder[]>("orders.ofSagas", { sagaIds: lost.map(c => c.sagaId) });
	for (const cart of lost) {
		const order = placed.find(o => o.sagaId === cart.sagaId);
		try {
			if (order && (order.status === "pending" || order.status === "awaiting_payment")) continue; // the order's reconciliation ends with its cart
			if (order && order.status !== "cancelled" && order.status !== "payment_failed") {
				await call("carts.checkout", { cartId: cart.cartId, sagaId: cart.sagaId, orderId: order.orderId, idempotencyKey: `${cart.sagaId}:reconcile:checkout` });
				report.cartsCheckedOut++;
				logger.info(`Reconciler: cart ${cart.cartId} was locked by a lost saga whose order ${order.orderId} is ${order.status}; checked it out`);
			} else {
				await call("carts.unlock", { cartId: cart.cartId, sagaId: cart.sagaId, idempotencyKey: `${cart.sagaId}:reconcile:unlock` });
				report.cartsUnlocked++;
				logger.info(`Reconciler: cart ${cart.cartId} was locked by a lost saga (${order ? `order ${order.orderId} ${order.status}` : "no order"}); unlocked it`);
			}
		} catch (err) {
			report.failed++;
			logger.warn(`Reconciler: cart ${cart.cartId} could not be reconciled now (the next pass tries again): ${(err as Error).message}`);
		}
	}
}
