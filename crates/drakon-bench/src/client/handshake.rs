//! The client's half of the WebSocket opening handshake (RFC 6455 §4.1): the upgrade request, and the check of the
//! server's `101` response. Done by hand so that the bytes the server sends right after its response (the replies
//! to pipelined requests) stay in the connection's own read buffer.

use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Largest response head accepted before its blank line.
pub const MAX_HEAD: usize = 16 * 1024;

/// The upgrade request for `path` on `host`, offering `key` (16 random bytes, base64).
pub fn request(host: &str, path: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    )
}

/// Checks the response head at the start of `buf` against the request's `key`: `Ok(None)` until its blank line has
/// arrived, then `Ok(Some(n))` with the `n` bytes the head took (what follows is already WebSocket frames).
pub fn check_response(buf: &[u8], key: &str) -> Result<Option<usize>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD { Err("response head too large".to_owned()) } else { Ok(None) };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("101") {
        return Err(format!("upgrade refused: {status}"));
    }
    let want = derive_accept_key(key.as_bytes());
    let accept = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, value)| value.trim());
    match accept {
        Some(a) if a == want => Ok(Some(end + 4)),
        Some(a) => Err(format!("wrong sec-websocket-accept {a:?}, want {want:?}")),
        None => Err("no sec-websocket-accept in the 101 response".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §1.3's example key and its accept value.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    #[test]
    fn the_request_is_an_upgrade() {
        assert_eq!(
            request("127.0.0.1:4000", "/data/websocket", KEY),
            "GET /data/websocket HTTP/1.1\r\nHost: 127.0.0.1:4000\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
    }

    #[test]
    fn checks_status_and_accept_key() {
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
             sec-websocket-accept: {ACCEPT}\r\n\r\n"
        );
        let mut with_frame = ok.as_bytes().to_vec();
        with_frame.extend_from_slice(&[0x81, 0x01, b'x']);
        assert_eq!(check_response(&with_frame, KEY), Ok(Some(ok.len())));
        assert_eq!(check_response(&ok.as_bytes()[..ok.len() - 1], KEY), Ok(None));

        let refused = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(check_response(refused, KEY), Err("upgrade refused: HTTP/1.1 404 Not Found".to_owned()));
        let no_accept = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert_eq!(check_response(no_accept, KEY), Err("no sec-websocket-accept in the 101 response".to_owned()));
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: abc\r\n\r\n";
        assert!(check_response(wrong, KEY).unwrap_err().starts_with("wrong sec-websocket-accept"));
        assert_eq!(check_response(&[b'a'; MAX_HEAD + 1], KEY), Err("response head too large".to_owned()));
    }
}
