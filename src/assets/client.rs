//! `/client/*`: the browser client module (`clients/js`), compiled in so
//! a page can `import` it from the gateway it talks to.

use axum::http::HeaderMap;
use axum::routing::get;

use super::Asset;
use crate::http::Handlers;

/// `gateway-client.js`, the ES module.
pub const MODULE: Asset =
    Asset::new("text/javascript; charset=utf-8", include_bytes!("../../clients/js/gateway-client.js"));

/// `gateway-client.d.ts`, its TypeScript declarations.
pub const TYPES: Asset = Asset::new(
    "application/typescript; charset=utf-8",
    include_bytes!("../../clients/js/gateway-client.d.ts"),
);

/// The client's routes: path template and handlers.
pub const ROUTES: [(&str, Handlers<()>); 2] = [
    ("/client/gateway-client.js", || get(|headers: HeaderMap| async move { MODULE.respond(&headers) })),
    ("/client/gateway-client.d.ts", || get(|headers: HeaderMap| async move { TYPES.respond(&headers) })),
];
