/**
 * The add-ons service's actions as other services call them: parameter and reply types.
 * (The joi schemas that enforce them live in the service.)
 */
import type { Money } from "./money";

/** An additional service offered at checkout (gift wrap, installation, extended warranty …), priced per order. */
export interface Addon {
	id: string;
	name: string;
	description: string;
	price: Money;
	/** Offered when the cart holds one of these products or a product of one of these categories; both empty: for every cart. */
	productIds: string[];
	categoryIds: string[];
	active: boolean;
}

export interface AddonLine {
	productId: string;
	categoryId?: string | null;
}

/** What the checkout shows: no scope lists. */
export type OfferedAddon = Pick<Addon, "id" | "name" | "description" | "price">;

/** `addons.available`: the active add-ons these lines qualify for (none for an empty cart). */
export interface AvailableParams {
	lines: AddonLine[];
	currency?: string;
}
export type AvailableReply = OfferedAddon[];

/** `addons.price`: the chosen add-ons' total; 422 naming `addonIds` when one is unknown or not available for these lines. */
export interface PriceParams {
	addonIds: string[];
	lines: AddonLine[];
	currency?: string;
}
export interface PriceReply {
	total: Money;
	addons: Array<Pick<Addon, "id" | "name" | "price">>;
}

/**
 * `addons.calculateAvailability`: the checkout calls it when its cart changes. Answers what is
 * available and which chosen add-ons remain so (with their total); records
 * `addons.availability_calculated` when the answer differs from this checkout's previous one.
 */
export interface CalculateAvailabilityParams {
	checkoutId: string;
	lines: AddonLine[];
	selectedAddonIds?: string[];
	currency?: string;
}
export interface CalculateAvailabilityReply {
	checkoutId: string;
	cartHash: string;
	available: OfferedAddon[];
	/** The chosen add-ons still available; the others dropped. */
	selected: Array<Pick<Addon, "id" | "name" | "price">>;
	total: Money;
	changed: boolean;
}
