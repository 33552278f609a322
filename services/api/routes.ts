/**
 * Every route of the gateway in one table: method, path, the action it calls, who may call
 * it, and how path parameters map to action params. The gateway's aliases, the OpenAPI document
 * and the route reference in docs/api.md (`npm run docs`) are built from it, so the contract
 * lives in exactly one place.
 */
/** `cart`: a logged-in user, or anyone sending the X-Guest-Token of a guest cart. */
export type Access = "public" | "user" | "admin" | "cart";

export interface RouteDef {
	method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
	path: string;
	action: string;
	access: Access;
	/** Status of a successful answer when not 200. */
	status?: number;
	/** Path parameter → action param, where the names differ. */
	rename?: Record<string, string>;
	/** Counted against the strict limit for authentication as well as the general one. */
	authLimit?: boolean;
	/** A payment provider's webhook: refused (401) unless `X-Signature` is the HMAC of the raw body. */
	signed?: boolean;
	summary: string;
}

/** Routes the gateway answers itself, without calling a service (handlers in api.service.ts). */
export const GATEWAY_ROUTES: Array<Pick<RouteDef, "method" | "path" | "access" | "summary">> = [
	{ method: "GET", path: "/health/live", access: "public", summary: "Liveness: answers while the process runs" },
	{ method: "GET", path: "/health/ready", access: "public", summary: "Readiness: checks RabbitMQ, Postgres and Redis and names the one that is down (503)" },
	{ method: "GET", path: "/openapi.json", access: "public", summary: "The OpenAPI 3 document of every route, generated from this table and the actions' joi schemas" },
	{ method: "GET", path: "/asyncapi.json", access: "public", summary: "The AsyncAPI 3 document of every domain and integration event, generated from the event catalogue" }
];

export const ROUTES: RouteDef[] = [
	// Customers
	{ method: "POST", path: "/auth/register", action: "customers.register", access: "public", status: 201, authLimit: true, summary: "Register a customer; a verification email is sent" },
	{ method: "POST", path: "/auth/verify-email", action: "customers.verifyEmail", access: "public", summary: "Verify an email address with the emailed token" },
	{ method: "POST", path: "/auth/login", action: "customers.login", access: "public", authLimit: true, summary: "Log in; answers a bearer token" },
	{ method: "GET", path: "/me", action: "customers.me", access: "user", summary: "The logged-in customer's profile" },
	{ method: "PATCH", path: "/me", action: "customers.updateMe", access: "user", summary: "Update the profile" },
	{ method: "DELETE", path: "/me", action: "customers.erase", access: "user", summary: "GDPR erasure: personal data deleted, orders anonymized (409 PENDING_ORDERS while an order is open)" },
	{ method: "GET", path: "/me/addresses", action: "customers.listAddresses", access: "user", summary: "The customer's shipping addresses" },
	{ method: "POST", path: "/me/addresses", action: "customers.addAddress", access: "user", status: 201, summary: "Add a shipping address (postal code checked per country)" },
	{ method: "DELETE", path: "/me/addresses/:id", action: "customers.deleteAddress", access: "user", summary: "Delete a shipping address" },
	{ method: "POST", path: "/auth/resend-verification", action: "customers.resendVerification", access: "public", authLimit: true, summary: "Send the verification email again" },

	// Catalog and stock
	{ method: "GET", path: "/categories", action: "catalog.listCategories", access: "public", summary: "The category tree" },
	{ method: "POST", path: "/categories", action: "catalog.createCategory", access: "admin", status: 201, summary: "Create a category (depth ≤ 3, name unique among its siblings)" },
	{ method: "GET", path: "/vendors", action: "catalog.listVendors", access: "public", summary: "Vendors" },
	{ method: "GET", path: "/vendors/:id", action: "catalog.getVendor", access: "public", summary: "One vendor" },
	{ method: "POST", path: "/vendors", action: "catalog.createVendor", access: "admin", status: 201, summary: "Create a vendor (gets the stock alerts of its products)" },
	{ method: "PATCH", path: "/products/:id", action: "catalog.updateProduct", access: "admin", summary: "Change a product's name, description, price, category or vendor (logged)" },
	{ method: "DELETE", path: "/products/:id", action: "catalog.deleteProduct", access: "admin", summary: "Soft-delete a product: gone from listings and carts, orders keep their copy" },
	{ method: "GET", path: "/products/:id/changes", action: "catalog.productChanges", access: "admin", summary: "A product's change log" },
	{ method: "GET", path: "/products", action: "catalog.listProducts", access: "public", summary: "Products (active only for non-admins) with available stock" },
	{ method: "GET", path: "/products/:id", action: "catalog.getProduct", access: "public", summary: "One product with available stock" },
	{ method: "POST", path: "/products", action: "catalog.createProduct", access: "admin", status: 201, summary: "Create a product (draft)" },
	{ method: "POST", path: "/products/:id/activate", action: "catalog.activateProduct", access: "admin", summary: "Put a product on sale" },
	{ method: "POST", path: "/products/:id/deactivate", action: "catalog.deactivateProduct", access: "admin", summary: "Take a product off sale" },
	{ method: "GET", path: "/inventory/:sku", action: "inventory.get", access: "admin", summary: "Stock of a SKU" },
	{ method: "PUT", path: "/inventory/:sku", action: "inventory.set", access: "admin", summary: "Set the on-hand quantity of a SKU" },
	{ method: "POST", path: "/inventory/:sku/adjustments", action: "inventory.adjust", access: "admin", summary: "Adjust the on-hand quantity by a delta" },
	{ method: "GET", path: "/inventory/:sku/audit", action: "inventory.audit", access: "admin", summary: "Every change of a SKU's stock" },

	// Cart and checkout
	{ method: "POST", path: "/carts", action: "carts.createGuest", access: "public", status: 201, summary: "A new guest cart: answers its id and the guest token to send as X-Guest-Token" },
	{ method: "GET", path: "/cart", action: "carts.get", access: "cart", summary: "The cart with current prices, totals and notices (price changes, removed products)" },
	{ method: "POST", path: "/cart/items", action: "carts.addItem", access: "cart", summary: "Add a product (capped to available stock)" },
	{ method: "PATCH", path: "/cart/items/:itemId", action: "carts.updateItem", access: "cart", summary: "Change a line's quantity (0 removes it)" },
	{ method: "DELETE", path: "/cart/items/:itemId", action: "carts.removeItem", access: "cart", summary: "Remove a line" },
	{ method: "POST", path: "/cart/items/:itemId/restore", action: "carts.restoreItem", access: "cart", summary: "Undo the last removal: the line comes back (capped to stock; 404 unless it is the line removed last)" },
	{ method: "DELETE", path: "/cart", action: "carts.clear", access: "cart", summary: "Empty the cart" },
	{ method: "POST", path: "/cart/merge", action: "carts.merge", access: "user", summary: "After login: the guest cart's lines join the customer's cart, capped to stock" },
	{ method: "POST", path: "/checkout/place", action: "checkout.place", access: "cart", status: 202, summary: "Place the order of the cart (starts the place-order saga)" },
	{ method: "GET", path: "/checkout/status/:sagaId", action: "checkout.status", access: "cart", summary: "Where a placed checkout stands" },

	// Checkout session (one per cart): choices and totals before placing the order
	{ method: "GET", path: "/checkout", action: "checkout.get", access: "cart", summary: "The checkout of the current cart: address, shipping, delivery date, payment method, promotions, add-ons, totals" },
	{ method: "PUT", path: "/checkout/contact", action: "checkout.setContact", access: "cart", summary: "A guest's email (and phone) for the order's mail; customers are mailed at their account's address" },
	{ method: "PUT", path: "/checkout/address", action: "checkout.setAddress", access: "cart", summary: "Ship to an address-book entry ({addressId}, customers only) or an address given here ({address})" },
	{ method: "GET", path: "/checkout/shipping-methods", action: "checkout.shippingMethods", access: "cart", summary: "Shipping methods for the checkout's country" },
	{ method: "PUT", path: "/checkout/shipping-method", action: "checkout.setShippingMethod", access: "cart", summary: "Choose the shipping method" },
	{ method: "PUT", path: "/checkout/delivery-date", action: "checkout.setDeliveryDate", access: "cart", summary: "Choose the delivery date; express adds the method's express fee" },
	{ method: "PUT", path: "/checkout/payment-method", action: "checkout.setPaymentMethod", access: "cart", summary: "Choose card, BLIK or PayPal" },
	{ method: "POST", path: "/checkout/promo-code", action: "checkout.applyPromoCode", access: "cart", summary: "Apply a promo code (422 unknown/expired/not applicable, 409 PROMO_CODE_USED_UP)" },
	{ method: "DELETE", path: "/checkout/promo-code", action: "checkout.removePromoCode", access: "cart", summary: "Remove the promo code" },
	{ method: "GET", path: "/checkout/addons", action: "checkout.addons", access: "cart", summary: "Additional services offered for the cart's products" },
	{ method: "PUT", path: "/checkout/addons", action: "checkout.setAddons", access: "cart", summary: "Choose additional services" },

	// Shipping methods, promotions, add-ons (shipping, promotions, addons services)
	{ method: "GET", path: "/shipping-methods", action: "shipping.listMethods", access: "public", summary: "Shipping methods on offer (?country= those delivering there); admins also see retired ones" },
	{ method: "POST", path: "/admin/shipping-methods", action: "shipping.createMethod", access: "admin", status: 201, summary: "Create a shipping method" },
	{ method: "PATCH", path: "/admin/shipping-methods/:id", action: "shipping.updateMethod", access: "admin", summary: "Change a shipping method (active: false retires it)" },
	{ method: "GET", path: "/admin/promotions", action: "promotions.list", access: "admin", summary: "Promotions and promo codes, newest first" },
	{ method: "POST", path: "/admin/promotions", action: "promotions.create", access: "admin", status: 201, summary: "Create a promotion (with a code: a promo code)" },
	{ method: "PATCH", path: "/admin/promotions/:id", action: "promotions.update", access: "admin", summary: "Change a promotion" },
	{ method: "GET", path: "/admin/addons", action: "addons.list", access: "admin", summary: "Additional services offered at checkout" },
	{ method: "POST", path: "/admin/addons", action: "addons.create", access: "admin", status: 201, summary: "Create an additional service for some products or categories (all when none given)" },
	{ method: "PATCH", path: "/admin/addons/:id", action: "addons.update", access: "admin", summary: "Change an additional service" },

	// Orders
	{ method: "GET", path: "/orders", action: "orders.list", access: "user", summary: "The customer's orders (all orders for admins)" },
	{ method: "GET", path: "/orders/:id", action: "orders.get", access: "user", summary: "One order with its lines, totals and status history" },
	{ method: "POST", path: "/orders/:id/confirm", action: "orders.confirm", access: "admin", rename: { id: "orderId" }, summary: "Confirm an order" },
	{ method: "POST", path: "/orders/:id/ship", action: "orders.ship", access: "admin", rename: { id: "orderId" }, summary: "Ship an order" },
	{ method: "POST", path: "/orders/:id/deliver", action: "orders.deliver", access: "admin", rename: { id: "orderId" }, summary: "Mark an order delivered" },

	// Orders and payments: cancel, refund, the payment provider's webhook and PayPal's redirects
	{ method: "POST", path: "/orders/:id/cancel", action: "orders.cancel", access: "user", status: 202, rename: { id: "orderId" }, summary: "Cancel an order before shipment (owner or admin): stock released, payment voided or refunded" },
	{ method: "POST", path: "/orders/:id/refund", action: "orders.refund", access: "admin", rename: { id: "orderId" }, summary: "Refund a captured payment, all of it or part; never more than captured" },
	{ method: "POST", path: "/payments/webhooks/:provider", action: "payments.webhook", access: "public", signed: true, summary: "The payment provider's signed webhook (X-Signature: sha256=<HMAC of the raw body>)" },
	{ method: "GET", path: "/payments/paypal/return", action: "payments.paypalReturn", access: "public", summary: "PayPal sends the buyer back after approving; redirects to the storefront's returnUrl" },
	{ method: "GET", path: "/payments/paypal/cancel", action: "payments.paypalCancel", access: "public", summary: "PayPal sends the buyer back after cancelling; redirects to the storefront's cancelUrl" },

	// Operators
	{ method: "GET", path: "/admin/sagas", action: "checkout.listSagas", access: "admin", summary: "Sagas by state and type" },
	{ method: "GET", path: "/admin/sagas/:id", action: "checkout.getSaga", access: "admin", summary: "One saga with its data and step history" },
	{ method: "POST", path: "/admin/sagas/:id/retry", action: "checkout.retrySaga", access: "admin", summary: "Resume a parked saga" },
	{ method: "POST", path: "/admin/sagas/:id/compensate", action: "checkout.compensateSaga", access: "admin", summary: "Force a saga to compensate" },
	{ method: "GET", path: "/admin/notifications", action: "notifications.list", access: "admin", summary: "The delivery log, newest first" },

	// Operators: dead letters
	{ method: "GET", path: "/admin/dead-letters", action: "ops.deadLetters", access: "admin", summary: "Messages that failed every retry, per queue, with their error (?queue= one queue)" },
	{ method: "POST", path: "/admin/dead-letters/replay", action: "ops.replayDeadLetters", access: "admin", summary: "Send dead letters back to their queue (all, one queue's, or the given ids); the consumer's inbox drops what it already handled" }
];
