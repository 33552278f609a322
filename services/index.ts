/** Every service of the shop; `SERVICES=a,b` picks which of them a process runs. */
export const SERVICE_NAMES = [
	"api",
	"customers",
	"notifications",
	"catalog",
	"inventory",
	"carts",
	"orders",
	"payments",
	"shipping",
	"promotions",
	"addons",
	"checkout",
	"ops"
] as const;

export type ServiceName = (typeof SERVICE_NAMES)[number];
