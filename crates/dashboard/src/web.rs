//! The web view's HTTP side: the embedded page and its assets, the token that guards the
//! page and the browser's socket, the Content-Security-Policy, and the `Host` and `Origin`
//! checks in front of Socket.IO.

use std::net::SocketAddr;

use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

/// The page, its script and style, and the published Socket.IO browser client.
const INDEX: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");
const SOCKET_IO_JS: &str = include_str!("../web/vendor/socket.io-client/socket.io.min.js");

/// Scripts, styles and connections from this origin only; no inline script or style, no
/// frame, no form, no plug-in. The page's events are untrusted text, and this is the second
/// line of defence after rendering them as text.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The token's length in random bytes (printed as twice as many hex digits).
const TOKEN_BYTES: usize = 16;

/// The header in which a relay sends the token (`SLUICE_TOKEN`): a browser's socket cannot
/// set headers, so pages send it in the query instead.
pub const TOKEN_HEADER: &str = "x-sluice-token";

/// Who may see the page and the live stream, and who may send.
#[derive(Clone)]
pub(crate) struct Guard {
    token: String,
    /// Bound to a loopback address: only loopback host names are served.
    loopback: bool,
    /// Sending needs the token too (by default, off loopback); otherwise relays and
    /// claude-mpm-style clients send without it.
    senders_need_token: bool,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("Guard")
            .field("loopback", &self.loopback)
            .field("senders_need_token", &self.senders_need_token)
            .finish_non_exhaustive()
    }
}

/// A random token from the operating system's generator.
pub(crate) fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::getrandom(&mut bytes).map_err(|error| std::io::Error::other(error.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What to do with a request.
pub(crate) enum Route {
    /// Hand it to Socket.IO; `viewer` when it carries the token.
    SocketIo,
    /// Answer it here.
    Answer(Response<Bytes>),
}

impl Guard {
    /// `senders_need_token`: `None` for the default (off loopback only).
    pub(crate) fn new(token: String, addr: SocketAddr, senders_need_token: Option<bool>) -> Self {
        let loopback = addr.ip().is_loopback();
        Self {
            token,
            loopback,
            senders_need_token: senders_need_token.unwrap_or(!loopback),
        }
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Whether `query` (a URL's query string) carries the token.
    pub(crate) fn admits(&self, query: Option<&str>) -> bool {
        let Some(query) = query else {
            return false;
        };
        query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("token="))
            .any(|given| same(given.as_bytes(), self.token.as_bytes()))
    }

    /// Routes `request`: Socket.IO, a page or asset, or a refusal.
    pub(crate) fn route<B>(&self, request: &Request<B>) -> Route {
        let headers = request.headers();
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        // On loopback, only loopback names: a page of another site whose name was rebound
        // to 127.0.0.1 (DNS rebinding) is not served.
        if self.loopback && !host.is_some_and(is_loopback_host) {
            return Route::Answer(refuse(StatusCode::FORBIDDEN, "unknown host\n"));
        }
        let path = request.uri().path();
        let with_token = self.admits(request.uri().query());
        let sender_token = headers
            .get(TOKEN_HEADER)
            .is_some_and(|given| same(given.as_bytes(), self.token.as_bytes()));
        if path == "/socket.io" || path.starts_with("/socket.io/") {
            // A browser always says where the page came from: only our own page may
            // connect, and only with the token. Relays send no Origin. (Neither Chromium's
            // websockets nor every browser send Fetch Metadata, so a client that sends an
            // Origin is taken for a browser: python-socketio's websocket transport does,
            // and then needs the token, in the query or the header.)
            if let Some(origin) = headers.get(header::ORIGIN) {
                let ours = host.is_some_and(|host| {
                    origin.to_str().ok() == Some(format!("http://{host}").as_str())
                });
                if !ours || !(with_token || sender_token) {
                    return Route::Answer(refuse(StatusCode::FORBIDDEN, "forbidden\n"));
                }
            }
            if self.senders_need_token && !with_token && !sender_token {
                return Route::Answer(refuse(StatusCode::FORBIDDEN, "token required\n"));
            }
            return Route::SocketIo;
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Route::Answer(refuse(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"));
        }
        Route::Answer(match path {
            "/" if with_token => asset(INDEX, "text/html; charset=utf-8"),
            "/" => refuse(
                StatusCode::FORBIDDEN,
                "the page needs its token: open the URL the dashboard printed\n",
            ),
            "/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
            "/app.css" => asset(APP_CSS, "text/css; charset=utf-8"),
            "/vendor/socket.io.min.js" => asset(SOCKET_IO_JS, "text/javascript; charset=utf-8"),
            _ => refuse(StatusCode::NOT_FOUND, "not found\n"),
        })
    }
}

/// Compares in a time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `127.0.0.1:port`, `localhost:port`, `[::1]:port` and the like.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The headers every answer carries: the policy, no caching, no referrer (the page's URL
/// holds the token), no sniffing, no framing.
fn respond(status: StatusCode, body: &'static str, content_type: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(body.as_bytes()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Bytes> {
    respond(StatusCode::OK, body, content_type)
}

fn refuse(status: StatusCode, why: &'static str) -> Response<Bytes> {
    respond(status, why, "text/plain; charset=utf-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(addr: &str) -> Guard {
        Guard::new("abc123".to_string(), addr.parse().unwrap(), None)
    }

    fn get(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap()
    }

    fn status(route: Route) -> Option<StatusCode> {
        match route {
            Route::SocketIo => None,
            Route::Answer(response) => Some(response.status()),
        }
    }

    #[test]
    fn the_page_needs_the_token_and_carries_the_policy() {
        let guard = guard("127.0.0.1:8765");
        let host = [("host", "127.0.0.1:8765")];
        assert_eq!(
            status(guard.route(&get("/", &host))),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(guard.route(&get("/?token=abc124", &host))),
            Some(StatusCode::FORBIDDEN)
        );
        let Route::Answer(page) = guard.route(&get("/?token=abc123", &host)) else {
            panic!("the page is answered here");
        };
        assert_eq!(page.status(), StatusCode::OK);
        let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert_eq!(page.headers()[header::REFERRER_POLICY], "no-referrer");
    }

    #[test]
    fn a_browser_socket_needs_our_origin_and_the_token() {
        let guard = guard("127.0.0.1:8765");
        let host = ("host", "localhost:8765");
        let uri = "/socket.io/?EIO=4&transport=websocket";
        let with = "/socket.io/?EIO=4&transport=websocket&token=abc123";
        // A relay: no Origin, no token, on loopback: may send.
        assert_eq!(status(guard.route(&get(uri, &[host]))), None);
        // A browser without the token, or from another origin: refused.
        let ours = ("origin", "http://localhost:8765");
        let theirs = ("origin", "http://evil.example");
        assert_eq!(
            status(guard.route(&get(uri, &[host, ours]))),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(guard.route(&get(with, &[host, theirs]))),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(status(guard.route(&get(with, &[host, ours]))), None);
        // A name rebound to 127.0.0.1 is not ours.
        assert_eq!(
            status(guard.route(&get(with, &[("host", "evil.example:8765")]))),
            Some(StatusCode::FORBIDDEN)
        );
    }

    #[test]
    fn off_loopback_sending_needs_the_token_too() {
        let guard = guard("0.0.0.0:8765");
        let host = ("host", "dashboard.lan:8765");
        assert_eq!(
            status(guard.route(&get("/socket.io/?EIO=4", &[host]))),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(guard.route(&get("/socket.io/?EIO=4&token=abc123", &[host]))),
            None
        );
        // A relay's SLUICE_TOKEN, in its header.
        for (token, refused) in [("abc123", None), ("abc12", Some(StatusCode::FORBIDDEN))] {
            let headers = [host, (TOKEN_HEADER, token)];
            assert_eq!(
                status(guard.route(&get("/socket.io/?EIO=4", &headers))),
                refused
            );
        }
        // And on loopback when asked.
        let strict = Guard::new(
            "abc123".to_string(),
            "127.0.0.1:1".parse().unwrap(),
            Some(true),
        );
        let host = ("host", "127.0.0.1:1");
        assert_eq!(
            status(strict.route(&get("/socket.io/?EIO=4", &[host]))),
            Some(StatusCode::FORBIDDEN)
        );
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1:1",
            "localhost:80",
            "[::1]:9",
            "127.0.0.2",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example:80", "10.0.0.1:80", "localhost.evil.example"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
