/**
 * The declared map of who consumes what (contracts/events.ts `EVENT_CONSUMERS`) is what the
 * publishers declare in RabbitMQ before their first publish; it must match the services'
 * `channels` handlers exactly, or an event published before its consumer started is lost.
 */
import { expect } from "chai";
import path from "node:path";
import { EVENT_CONSUMERS, EVENT_NAMES } from "../../contracts/events";
import { SERVICE_NAMES } from "../../services";

function channelsOf(schema: any): Array<[string, string]> {
	const out: Array<[string, string]> = [];
	for (const mixin of schema.mixins ?? []) out.push(...channelsOf({ ...mixin, name: schema.name }));
	for (const [event, def] of Object.entries<any>(schema.channels ?? {})) out.push([event, def?.group ?? schema.name]);
	return out;
}

describe("the declared event consumers", () => {
	it("list exactly the channel handlers of the services", () => {
		const actual: Record<string, string[]> = {};
		for (const name of SERVICE_NAMES) {
			// eslint-disable-next-line @typescript-eslint/no-require-imports
			const schema = require(path.join(__dirname, "..", "..", "services", `${name}.service.ts`)).default;
			for (const [event, group] of channelsOf(schema)) (actual[event] ??= []).push(group);
		}
		const declared = Object.fromEntries(Object.entries(EVENT_CONSUMERS).map(([e, groups]) => [e, [...groups!].sort()]));
		for (const groups of Object.values(actual)) groups.sort();
		expect(declared, "contracts/events.ts EVENT_CONSUMERS").to.deep.equal(actual);
	});

	it("name only known events", () => {
		for (const event of Object.keys(EVENT_CONSUMERS)) expect(EVENT_NAMES as readonly string[]).to.include(event);
	});
});
