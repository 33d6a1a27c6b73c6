//! Which web pages may use this server from a browser: a WebSocket handshake and a cookie-authenticated request are
//! accepted from the server's own origin and from `allowed_origins`, and refused from any other site, so a page
//! elsewhere (another site, or another port of this one) cannot open a socket in a visitor's name or ride an admin's
//! cookie. A request without `Origin` does not come from a page script (a server-side program, `curl`, a top-level
//! navigation), and is not refused for that.

use axum::http::{HeaderMap, header};

use crate::ServerOptions;

/// Whether the request's `Origin`, if it has one, may use this server.
pub fn origin_allowed(options: &ServerOptions, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    if options.allowed_origins.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin)) {
        return true;
    }
    // The server's own origin, as the browser addressed it: the scheme, then exactly the request's `Host`.
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn check(allowed: &[&str], host: Option<&str>, origin: Option<&str>) -> bool {
        let options =
            ServerOptions { allowed_origins: allowed.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        origin_allowed(&options, &headers)
    }

    #[test]
    fn the_own_origin_and_the_listed_ones_pass_and_every_other_page_is_refused() {
        let own = Some("127.0.0.1:8000");
        let table = [
            (&[][..], own, None, true),
            (&[], own, Some("http://127.0.0.1:8000"), true),
            (&[], own, Some("https://127.0.0.1:8000"), true),
            (&[], own, Some("http://evil.example"), false),
            (&[], own, Some("http://127.0.0.1:8001"), false),
            (&[], own, Some("http://127.0.0.1:80000"), false),
            (&[], own, Some("null"), false),
            (&[], None, Some("http://127.0.0.1:8000"), false),
            (&["http://app.example:3000"], own, Some("http://app.example:3000"), true),
            (&["http://app.example:3000"], own, Some("http://app.example:3001"), false),
            (&["*"], own, Some("http://anything.example"), true),
        ];
        for (allowed, host, origin, want) in table {
            assert_eq!(check(allowed, host, origin), want, "allowed {allowed:?}, host {host:?}, origin {origin:?}");
        }
    }
}
