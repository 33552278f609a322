/**
 * Email through nodemailer: SMTP when SMTP_URL is set (smtp://user:pass@host:587, smtps://…),
 * else nodemailer's JSON transport, which needs no server (the message is only rendered; the
 * delivery log keeps it). Timeouts are short on purpose: a send happens inside the handler's
 * transaction (see notifications.service.ts).
 */
import nodemailer from "nodemailer";
import { readSettings, Settings } from "../../infra/settings";

export interface OutgoingEmail {
	to: string;
	subject: string;
	text: string;
	html?: string;
}

export interface Mailer {
	/** Sends once, retrying a temporary failure; throws the last error when it gives up. */
	send(mail: OutgoingEmail): Promise<{ messageId: string; attempts: number }>;
	close(): void;
}

export function createMailer(s: Pick<Settings, "smtpUrl" | "mailFrom" | "mailAttempts" | "mailBackoffMs"> = readSettings()): Mailer {
	const from = s.mailFrom;
	const transport = s.smtpUrl
		? nodemailer.createTransport({ url: s.smtpUrl, connectionTimeout: 5_000, greetingTimeout: 5_000, socketTimeout: 10_000 } as any)
		: nodemailer.createTransport({ jsonTransport: true });
	const attempts = s.mailAttempts;
	const backoffMs = s.mailBackoffMs;
	return {
		async send(mail) {
			for (let attempt = 1; ; attempt++) {
				try {
					const info = await transport.sendMail({ from, to: mail.to, subject: mail.subject, text: mail.text, ...(mail.html ? { html: mail.html } : {}) });
					return { messageId: String(info.messageId ?? ""), attempts: attempt };
				} catch (err: any) {
					// A 5xx answer of the SMTP server is final (bad address, rejected); anything else may pass later.
					const permanent = typeof err?.responseCode === "number" && err.responseCode >= 500;
					if (permanent || attempt >= attempts) throw Object.assign(err, { attempts: attempt });
					await new Promise(r => setTimeout(r, backoffMs * 4 ** (attempt - 1)));
				}
			}
		},
		close() {
			transport.close();
		}
	};
}
