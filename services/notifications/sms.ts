/**
 * SMS through a provider adapter. SMS_PROVIDER=simulated (the default) sends nothing anywhere:
 * it accepts every number except those starting with +999, which it treats as unreachable (so a
 * failed delivery can be seen and tested). A real provider is another adapter with the same
 * `send`. A failure is retried with backoff (SMS_ATTEMPTS, default 3); then the last error is thrown.
 */
import { randomUUID } from "node:crypto";
import { readSettings, Settings } from "../../infra/settings";

export interface OutgoingSms {
	to: string;
	text: string;
}

export interface SmsSender {
	send(sms: OutgoingSms): Promise<{ messageId: string; attempts: number }>;
}

/** The simulated provider: remembers what it sent (newest last), refuses +999… numbers. */
export class SimulatedSmsProvider {
	readonly sent: Array<OutgoingSms & { messageId: string }> = [];

	async send(sms: OutgoingSms): Promise<{ messageId: string }> {
		if (sms.to.replace(/[\s()-]/g, "").startsWith("+999")) throw new Error(`simulated provider: ${sms.to} is unreachable`);
		const messageId = `sim-${randomUUID()}`;
		this.sent.push({ ...sms, messageId });
		return { messageId };
	}
}

export function createSmsSender(s: Pick<Settings, "smsProvider" | "smsAttempts" | "smsBackoffMs"> = readSettings()): SmsSender {
	if (s.smsProvider !== "simulated") throw new Error(`SMS_PROVIDER=${s.smsProvider} is not known (simulated is)`);
	const provider = new SimulatedSmsProvider();
	const attempts = s.smsAttempts;
	const backoffMs = s.smsBackoffMs;
	return {
		async send(sms) {
			for (let attempt = 1; ; attempt++) {
				try {
					return { ...(await provider.send(sms)), attempts: attempt };
				} catch (err) {
					if (attempt >= attempts) throw Object.assign(err as Error, { attempts: attempt });
					await new Promise(r => setTimeout(r, backoffMs * 4 ** (attempt - 1)));
				}
			}
		}
	};
}
