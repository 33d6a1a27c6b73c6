//! The HTTP/1.1 the floor server reads: a request head (the WebSocket upgrade, or `POST /api/publish`) and a
//! `content-length` body. Enough for the load generator's requests, nothing more.

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A request line and its headers.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    headers: Vec<(String, String)>,
    /// Bytes of the buffer the head took, the blank line included.
    pub len: usize,
}

impl Head {
    /// The value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body's length; no `content-length` means no body (chunked bodies are not supported).
    pub fn content_length(&self) -> Result<usize, &'static str> {
        self.header("content-length").map_or(Ok(0), |v| v.parse().map_err(|_| "bad content-length"))
    }

    /// Whether this is a WebSocket upgrade request.
    pub fn is_upgrade(&self) -> bool {
        self.method == "GET" && self.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }
}

/// Parses the request head at the start of `buf`: `None` while the blank line that ends it has not arrived.
pub fn parse(buf: &[u8]) -> Option<Result<Head, &'static str>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (buf.len() > MAX_HEAD).then_some(Err("request head too large"));
    };
    Some(parse_head(&buf[..end], end + 4))
}

fn parse_head(head: &[u8], len: usize) -> Result<Head, &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let mut request = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(_version)) = (request.next(), request.next(), request.next()) else {
        return Err("bad request line");
    };
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or("bad header line")?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let path = target.split('?').next().unwrap_or_default();
    Ok(Head { method: method.to_owned(), path: path.to_owned(), headers, len })
}

/// A whole response with a JSON body.
pub fn response(status: u16, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_generators_requests() {
        let upgrade = b"GET /data/websocket HTTP/1.1\r\nHost: 127.0.0.1:4000\r\nConnection: Upgrade\r\n\
                        Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let head = parse(upgrade).unwrap().unwrap();
        assert_eq!((head.method.as_str(), head.path.as_str(), head.len), ("GET", "/data/websocket", upgrade.len()));
        assert!(head.is_upgrade());
        assert_eq!(head.header("sec-websocket-key"), Some("dGhlIHNhbXBsZSBub25jZQ=="));

        let publish = b"POST /api/publish?x=1 HTTP/1.1\r\nhost: a\r\nauthorization: Bearer k\r\ncontent-length: 12\r\n\r\n{\"channel\":1}";
        let head = parse(publish).unwrap().unwrap();
        assert_eq!((head.method.as_str(), head.path.as_str()), ("POST", "/api/publish"));
        assert!(!head.is_upgrade());
        assert_eq!(head.header("Authorization"), Some("Bearer k"));
        assert_eq!(head.content_length(), Ok(12));
        assert_eq!(&publish[head.len..], b"{\"channel\":1}");
    }

    #[test]
    fn waits_for_the_blank_line_and_refuses_garbage() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nhost: a\r\n"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(&[b'a'; MAX_HEAD + 1]), Some(Err("request head too large")));
        assert_eq!(parse(b"GET\r\n\r\n"), Some(Err("bad request line")));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"), Some(Err("bad header line")));
        let head = parse(b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.content_length(), Err("bad content-length"));
    }

    #[test]
    fn responses_carry_their_length() {
        assert_eq!(
            response(403, r#"{"code":"permission_denied"}"#),
            b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 28\r\n\r\n{\"code\":\"permission_denied\"}"
        );
    }
}
