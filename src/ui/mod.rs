//! The web UI: `GET /` redirects to `/ui/`, which serves a single-page app
//! compiled into the binary (`web/`: plain HTML, CSS and ES modules, no
//! build step). It talks to the gateway only through `/v1` and the browser
//! client (`/client/gateway-client.js`), and its Content-Security-Policy
//! lets the page load and connect to nothing but this origin.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::assets::Asset;
use crate::error::ApiError;
use crate::http::Handlers;

/// Where `/` sends a browser.
pub const UI_PATH: &str = "/ui/";

/// The policy of every UI file: this origin only (scripts, styles, fetches,
/// event streams), no framing, no inline script.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
     script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

const JS: &str = "text/javascript; charset=utf-8";

/// The UI's files by name.
pub const FILES: [(&str, Asset); 7] = [
    ("index.html", Asset::new("text/html; charset=utf-8", include_bytes!("../../web/index.html"))),
    ("style.css", Asset::new("text/css; charset=utf-8", include_bytes!("../../web/style.css"))),
    ("app.js", Asset::new(JS, include_bytes!("../../web/app.js"))),
    ("tree.js", Asset::new(JS, include_bytes!("../../web/tree.js"))),
    ("keyview.js", Asset::new(JS, include_bytes!("../../web/keyview.js"))),
    ("log.js", Asset::new(JS, include_bytes!("../../web/log.js"))),
    ("util.js", Asset::new(JS, include_bytes!("../../web/util.js"))),
];

/// The UI's routes: path template and handlers.
pub const ROUTES: [(&str, Handlers<()>); 3] = [
    ("/", || get(|| async { Redirect::to(UI_PATH) })),
    ("/ui/", || get(|headers: HeaderMap| async move { file("index.html", &headers) })),
    ("/ui/{file}", || {
        get(|Path(name): Path<String>, headers: HeaderMap| async move { file(&name, &headers) })
    }),
];

/// A UI file with the UI's security headers, or 404 `not_found`.
fn file(name: &str, headers: &HeaderMap) -> Response {
    let Some((_, asset)) = FILES.iter().find(|(n, _)| *n == name) else {
        return ApiError::RouteNotFound { path: format!("{UI_PATH}{name}") }.into_response();
    };
    let mut response = asset.respond(headers);
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
