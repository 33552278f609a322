/**
 * A small demo shop for a first start: a vendor, a few categories and about twenty products
 * with stock, a promo code (DEMO10) and an add-on for the knives, created through the services'
 * own actions (as an admin would). Shipping methods and gift wrapping come with a fresh shop. Loaded by
 * `npm start` when the embedded shop is empty, unless DEMO_DATA=0; a system with servers
 * (TRANSPORTER / DATABASE_URL) loads it only with DEMO_DATA=1.
 */
import type { ServiceBroker } from "moleculer";
import { randomUUID } from "node:crypto";
import type { Settings } from "../infra/settings";

const DEMO: Record<string, Record<string, Array<[name: string, price: number, stock: number, description: string]>>> = {
	Kitchen: {
		Mugs: [
			["Enamel mug, white", 3900, 40, "Camping classic, 350 ml"],
			["Stoneware mug, blue", 4900, 25, "Hand-glazed, 400 ml"],
			["Espresso cups, set of 2", 5900, 12, "Porcelain, 80 ml each"],
			["Travel mug", 7900, 30, "Keeps coffee hot for 4 hours"]
		],
		Teapots: [
			["Cast-iron teapot", 14900, 8, "0.8 l, enamelled inside"],
			["Glass teapot with infuser", 8900, 15, "1 l, heat-resistant glass"],
			["Clay teapot", 11900, 4, "Unglazed, for oolong"]
		],
		Knives: [
			["Chef's knife 20 cm", 24900, 10, "Stainless steel"],
			["Bread knife", 12900, 14, "Serrated, 22 cm"],
			["Paring knife", 5900, 3, "For small work"]
		]
	},
	Home: {
		Lamps: [
			["Desk lamp", 19900, 9, "Adjustable arm, warm light"],
			["Floor lamp", 34900, 5, "Linen shade"],
			["Bedside lamp", 12900, 18, "Dimmable"]
		],
		Textiles: [
			["Linen tablecloth", 15900, 7, "150 × 250 cm"],
			["Wool throw", 22900, 6, "Merino, 130 × 170 cm"],
			["Cotton towels, set of 4", 9900, 20, "Organic cotton"]
		]
	},
	Garden: {
		Tools: [
			["Pruning shears", 6900, 22, "Bypass blades"],
			["Garden trowel", 3900, 35, "Ash handle"],
			["Watering can 10 l", 8900, 11, "Galvanised steel"],
			["Garden gloves", 2900, 0, "Sold out: shows how an empty product looks"]
		]
	}
};

/** Loads the demo catalog when the catalog has no product yet. Answers how many products it made (0: not empty). */
export async function loadDemoData(broker: ServiceBroker): Promise<number> {
	const admin = { user: { id: randomUUID(), role: "admin", email: "demo-loader@shop.local" } };
	const call = <T = any>(action: string, params: unknown) => broker.call<T, any>(action, params, { meta: admin });
	await broker.waitForServices(["catalog", "inventory"], 60_000);
	const existing = await call<{ total: number }>("catalog.listProducts", { pageSize: 1 });
	if (existing.total > 0) return 0;
	const vendor = await call("catalog.createVendor", { name: "Demo Supplies", email: "vendor@shop.local", phone: "+48 600 000 000" });
	let made = 0;
	const categories = new Map<string, string>();
	for (const [top, subs] of Object.entries(DEMO)) {
		const parent = await call("catalog.createCategory", { name: top });
		for (const [sub, products] of Object.entries(subs)) {
			const category = await call("catalog.createCategory", { name: sub, parentId: parent.id });
			categories.set(sub, category.id);
			for (const [name, amount, stock, description] of products) {
				const p = await call("catalog.createProduct", {
					name, description, price: { amount, currency: "PLN" }, categoryId: category.id, vendorId: vendor.id, initialStock: stock, lowStockThreshold: 3
				});
				await call("catalog.activateProduct", { id: p.id });
				made++;
			}
		}
	}
	// What the other services offer, when they run here.
	const running = (name: string) => broker.registry.getServiceList({ onlyAvailable: true }).some((svc: any) => svc.name === name);
	if (running("promotions")) await call("promotions.create", { name: "Demo: 10% off everything", code: "DEMO10", kind: "percentage", value: 10 });
	if (running("addons")) await call("addons.create", { name: "Knife sharpening", description: "Sharpened by hand before shipping", price: { amount: 1500, currency: "PLN" }, categoryIds: [categories.get("Knives")] });
	return made;
}

/** What the start-up log says after loading: where to look, how to log in, two requests to try. */
export function demoBanner(s: Settings, made: number, passwordWasSet: boolean): string {
	const base = `http://localhost:${s.port}`;
	const password = passwordWasSet ? "(the ADMIN_PASSWORD you set)" : s.adminPassword;
	return [
		made > 0
			? `Demo shop loaded: ${made} products in 3 categories from the vendor "Demo Supplies", promo code DEMO10 (DEMO_DATA=0 starts empty).`
			: "The catalog has products already: no demo data loaded.",
		`Admin login: ${s.adminEmail} / ${password}`,
		"Try:",
		`  curl ${base}/api/products`,
		`  curl -X POST ${base}/api/auth/login -H 'Content-Type: application/json' -d '{"email":"${s.adminEmail}","password":"${passwordWasSet ? "<ADMIN_PASSWORD>" : s.adminPassword}"}'`
	].join("\n");
}
