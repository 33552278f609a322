/**
 * Email through nodemailer: SMTP when SMTP_URL is set (smtp://user:pass@host:587, smtps://…),
 * else nodemailer's JSON transport, which needs no server (the message is only rendered; the
 * delivery log keeps it). Timeouts are short on purpose: a send happens inside the handler's
 * transaction (see notifications.service.ts).
 */
import nodemailer from "nodemailer";

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

export function createMailer(env: NodeJS.ProcessEnv = process.env): Mailer {
	const from = env.MAIL_FROM || "saga-commerce <no-reply@shop.local>";
	const transport = env.SMTP_URL
		? nodemailer.createTransport({ url: env.SMTP_URL, connectionTimeout: 5_000, greetingTimeout: 5_000, socketTimeout: 10_000 } as any)
		: nodemailer.createTransport({ jsonTransport: true });
	const attempts = Math.max(1, Number(env.MAIL_ATTEMPTS ?? 3) || 3);
	const backoffMs = Math.max(0, Number(env.MAIL_BACKOFF_MS ?? 250) || 0);
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
