/** A storefront's view of the gateway: JSON in and out, status and headers kept. */
export interface HttpAnswer<T = any> {
	status: number;
	body: T;
	headers: Headers;
}

export class Http {
	constructor(public baseUrl: string) {}

	async request<T = any>(method: string, path: string, opts: { body?: unknown; token?: string; headers?: Record<string, string>; raw?: string } = {}): Promise<HttpAnswer<T>> {
		const headers: Record<string, string> = { ...opts.headers };
		if (opts.token) headers.authorization = `Bearer ${opts.token}`;
		let body: string | undefined;
		if (opts.raw !== undefined) body = opts.raw;
		else if (opts.body !== undefined) body = JSON.stringify(opts.body);
		if (body !== undefined) headers["content-type"] ??= "application/json";
		const res = await fetch(this.baseUrl + path, { method, headers, body });
		const text = await res.text();
		let parsed: any = text;
		try {
			parsed = text ? JSON.parse(text) : null;
		} catch {
			/* not JSON: keep the text */
		}
		return { status: res.status, body: parsed, headers: res.headers };
	}

	get<T = any>(path: string, token?: string, headers?: Record<string, string>) {
		return this.request<T>("GET", path, { token, headers });
	}
	post<T = any>(path: string, body?: unknown, token?: string, headers?: Record<string, string>) {
		return this.request<T>("POST", path, { body: body ?? {}, token, headers });
	}
	put<T = any>(path: string, body?: unknown, token?: string, headers?: Record<string, string>) {
		return this.request<T>("PUT", path, { body: body ?? {}, token, headers });
	}
	patch<T = any>(path: string, body?: unknown, token?: string) {
		return this.request<T>("PATCH", path, { body: body ?? {}, token });
	}
	delete<T = any>(path: string, token?: string, body?: unknown) {
		return this.request<T>("DELETE", path, { token, body });
	}
}

/** Fails with the whole answer when the status is not the expected one. */
export function expectStatus<T>(answer: HttpAnswer<T>, status: number): T {
	if (answer.status !== status) throw new Error(`expected HTTP ${status}, got ${answer.status}: ${JSON.stringify(answer.body)}`);
	return answer.body;
}
