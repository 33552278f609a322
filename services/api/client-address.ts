/**
 * The client's address as the gateway sees it. `X-Forwarded-For` is believed only when the
 * connection comes from a configured proxy (TRUSTED_PROXIES, comma-separated addresses):
 * then the right-most address that is not itself a trusted proxy is the client.
 */
export function parseTrustedProxies(value: string | undefined): Set<string> {
	return new Set((value ?? "").split(",").map(normalize).filter(Boolean));
}

function normalize(address: string): string {
	const a = address.trim();
	return a.startsWith("::ffff:") ? a.slice(7) : a;
}

export function clientAddress(remoteAddress: string | undefined, forwardedFor: string | string[] | undefined, trusted: Set<string>): string {
	const peer = normalize(remoteAddress ?? "unknown");
	if (!trusted.has(peer) || !forwardedFor) return peer;
	const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor).split(",").map(normalize).filter(Boolean);
	for (let i = hops.length - 1; i >= 0; i--) {
		if (!trusted.has(hops[i]!)) return hops[i]!;
	}
	return hops[0] ?? peer;
}
