/**
 * `checkout.cancelOrder`: runs the cancel-order saga of an order (orders.cancel asks for it
 * once it checked the order may still be cancelled). One saga per order — its id is derived
 * from the order id and it is created only if absent — so a repeat, from any replica, answers
 * the same cancellation.
 */
import Joi from "joi";
import { createHash } from "node:crypto";
import { Errors } from "moleculer";
import { conflict } from "../../contracts/errors";
import type { PaymentView } from "../../contracts/actions";
import { settings } from "../../infra/settings";
import type { ActionDef, ServiceThis } from "../../infra/service";
import type { SagaEngine, SagaRecord, SagaStore } from "../../sagas";
import { cancelOrder, CancelOrderData } from "../../sagas/cancel-order.saga";
import { uuid } from "../../contracts/ids";

type This = ServiceThis<object, { engine: SagaEngine; store: SagaStore }>;

/** A UUID (version 5 layout) derived from a name: the same name always gives the same id. */
export function uuidFrom(name: string): string {
	const h = createHash("sha1").update(`saga-commerce:${name}`).digest();
	h[6] = (h[6]! & 0x0f) | 0x50;
	h[8] = (h[8]! & 0x3f) | 0x80;
	const hex = h.subarray(0, 16).toString("hex");
	return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

export function cancelAnswer(rec: SagaRecord<CancelOrderData>) {
	return {
		sagaId: rec.id,
		orderId: rec.data.orderId,
		status: rec.status === "completed" ? "cancelled" : "cancelling",
		refundAmount: rec.data.refundAmount ?? null,
		saga: { state: rec.state, status: rec.status }
	};
}

export const cancelActions: Record<string, ActionDef<This>> = {
	cancelOrder: {
		params: Joi.object({
			orderId: uuid.required(),
			reason: Joi.string().trim().min(1).max(1000).required(),
			requestedBy: Joi.string().max(100).required(),
			idempotencyKey: Joi.string().max(200)
		}),
		async handler(ctx) {
			const { orderId, reason, requestedBy } = ctx.params;
			const sagaId = uuidFrom(`cancel-order:${orderId}`);
			if (!(await this.store.get(sagaId))) {
				// How the order was paid decides between a void and a refund (asked as checkout, not as the customer).
				const payment = await this.broker.call<PaymentView, any>("payments.get", { orderId }, { meta: { correlationId: ctx.meta.correlationId } }).catch((err: any) => {
					if (err?.code === 404) return null;
					throw err;
				});
				const data: CancelOrderData = {
					sagaId, orderId, reason, requestedBy,
					payment: payment ? { status: payment.status, captured: payment.captured ?? null, refunded: payment.refunded ?? null } : null
				};
				await this.engine.startOnce(cancelOrder.name, data, { sagaId, correlationId: ctx.meta.correlationId });
			}
			const rec = (await this.engine.waitFor(sagaId, { timeoutMs: settings.checkoutWaitMs })) as SagaRecord<CancelOrderData>;
			if (rec.status === "compensated") throw conflict("INVALID_TRANSITION", `The order could not be cancelled: ${rec.failure?.message ?? "refused"}`, { orderId, sagaId });
			if (rec.status === "parked") throw new Errors.MoleculerServerError("The cancellation stopped half way and waits for an operator", 500, "SAGA_PARKED", { orderId, sagaId });
			return cancelAnswer(rec);
		}
	}
};
