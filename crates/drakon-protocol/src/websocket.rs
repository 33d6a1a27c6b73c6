//! WebSocket framing (RFC 6455) for the server side: the opening handshake's accept key, the header of every frame
//! the server sends, and an incremental decoder of what clients send, with the checks the RFC requires of a server.
//!
//! drakon frames its own sockets so that a publication is written as the shared payload behind a 2–4 byte header
//! computed on the spot, several of them in one `writev`, with nothing per connection kept between writes. No
//! extensions are negotiated (no compression), so every reserved bit must be clear.

use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use sha1::{Digest, Sha1};

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Close codes drakon sends for protocol faults (RFC 6455 §7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// The `Sec-WebSocket-Accept` value answering a client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(client_key: &[u8]) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha1 = Sha1::new();
    sha1.update(client_key);
    sha1.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// Whether a `Sec-WebSocket-Key` is what the RFC asks for: 16 bytes, base64-encoded.
pub fn is_valid_key(client_key: &[u8]) -> bool {
    client_key.len() == 24
        && base64::engine::general_purpose::STANDARD.decode(client_key).is_ok_and(|decoded| decoded.len() == 16)
}

/// The header of one final, unmasked frame, as the server sends it: 2, 4 or 10 bytes.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    bytes: [u8; 10],
    len: u8,
}

impl Header {
    pub fn new(opcode: Opcode, payload_len: usize) -> Header {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | opcode as u8;
        let len = if payload_len < 126 {
            bytes[1] = payload_len as u8;
            2
        } else if let Ok(short) = u16::try_from(payload_len) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        };
        Header { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// One whole frame, header and payload in one buffer: for control frames and other one-off writes.
pub fn encode_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let header = Header::new(opcode, payload.len());
    let mut frame = Vec::with_capacity(header.as_bytes().len() + payload.len());
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A close frame with a status code and a reason (cut to fit the 125-byte limit of control frames, at a character
/// boundary).
pub fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_frame(Opcode::Close, &payload)
}

/// A complete message from a client: data frames reassembled, control frames as they come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// The client's close frame: its status code and reason, when it gave one.
    Close(Option<(u16, String)>),
}

/// Why a client's frames cannot be read: each ends the connection with the close code the RFC assigns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    #[error("message of {0} bytes or more is past the limit")]
    TooBig(u64),
}

impl WsError {
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => CLOSE_PROTOCOL_ERROR,
            WsError::InvalidUtf8 => CLOSE_INVALID_PAYLOAD,
            WsError::TooBig(_) => CLOSE_MESSAGE_TOO_BIG,
        }
    }

    /// The reason sent in the close frame.
    pub fn reason(&self) -> &'static str {
        match self {
            WsError::Protocol(what) => what,
            WsError::InvalidUtf8 => "text is not valid UTF-8",
            WsError::TooBig(_) => "frame too large",
        }
    }
}

/// Close codes a peer may send (RFC 6455 §7.4; 1004–1006 and 1015 are reserved for reporting, never sent).
fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Reads client frames out of a buffer as they arrive. Keeps only a message whose fragments have not all come yet;
/// checks a frame's length against the limit from its header, before its payload is buffered.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// A fragmented data message being put together: its opcode and the payload so far.
    partial: Option<(Opcode, BytesMut)>,
}

impl Decoder {
    /// `max_message` caps one message (all its fragments together).
    pub fn new(max_message: usize) -> Decoder {
        Decoder { max_message, partial: None }
    }

    /// Takes the next complete message out of `buf`, or `None` when more bytes are needed (`buf` then holds the
    /// start of a frame, never more than one frame's header and the limit).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        loop {
            let Some((opcode, fin, payload)) = self.next_frame(buf)? else { return Ok(None) };
            if let Some(message) = self.assemble(opcode, fin, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// One frame: its opcode, FIN bit and unmasked payload.
    fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<(Opcode, bool, BytesMut)>, WsError> {
        let [b0, b1, ..] = buf[..] else { return Ok(None) };
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set without a negotiated extension"));
        }
        let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(WsError::Protocol("unknown opcode"))?;
        let fin = b0 & 0x80 != 0;
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let (len, at) = match b1 & 0x7F {
            126 => {
                let Some(bytes) = buf.get(2..4) else { return Ok(None) };
                (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10) else { return Ok(None) };
                let len = u64::from_be_bytes(bytes.try_into().unwrap_or_default());
                if len >> 63 != 0 {
                    return Err(WsError::Protocol("frame length has its top bit set"));
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        if opcode.is_control() && (!fin || len > 125) {
            return Err(WsError::Protocol("control frames must be final and at most 125 bytes"));
        }
        let so_far = self.partial.as_ref().map_or(0, |(_, data)| data.len() as u64);
        if !opcode.is_control() && so_far + len > self.max_message as u64 {
            return Err(WsError::TooBig(so_far + len));
        }
        let header = at + 4;
        let total = header + len as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        let mut frame = buf.split_to(total);
        frame.advance(header);
        for (i, byte) in frame.iter_mut().enumerate() {
            *byte ^= mask[i & 3];
        }
        Ok(Some((opcode, fin, frame)))
    }

    fn assemble(&mut self, opcode: Opcode, fin: bool, payload: BytesMut) -> Result<Option<Message>, WsError> {
        let (opcode, data) = match (opcode, self.partial.take()) {
            (Opcode::Ping, partial) => {
                self.partial = partial;
                return Ok(Some(Message::Ping(payload.freeze())));
            }
            (Opcode::Pong, partial) => {
                self.partial = partial;
                return Ok(Some(Message::Pong(payload.freeze())));
            }
            (Opcode::Close, _) => return close_message(&payload).map(Some),
            (Opcode::Continuation, None) => return Err(WsError::Protocol("continuation frame without a message")),
            (Opcode::Continuation, Some((opcode, mut data))) => {
                data.extend_from_slice(&payload);
                (opcode, data)
            }
            (_, Some(_)) => return Err(WsError::Protocol("new message before the last one ended")),
            (opcode, None) => (opcode, payload),
        };
        if !fin {
            self.partial = Some((opcode, data));
            return Ok(None);
        }
        Ok(Some(match opcode {
            Opcode::Text => Message::Text(String::from_utf8(Vec::from(data)).map_err(|_| WsError::InvalidUtf8)?),
            _ => Message::Binary(data.freeze()),
        }))
    }
}

fn close_message(payload: &[u8]) -> Result<Message, WsError> {
    match payload {
        [] => Ok(Message::Close(None)),
        [_] => Err(WsError::Protocol("close frame with a one-byte body")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Message::Close(Some((code, reason.to_owned()))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, WsError> {
        let mut decoder = Decoder::new(1 << 20);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(message) = decoder.decode(&mut buf)? {
            out.push(message);
        }
        assert!(buf.is_empty(), "bytes left over: {buf:?}");
        Ok(out)
    }

    /// Masks `payload` the way a client does, with the RFC's example key.
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![b0];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[test]
    fn the_accept_key_is_the_rfcs_example() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"c2hvcnQ="));
        assert!(!is_valid_key(b"not base64 at all, 24 by"));
    }

    #[test]
    fn headers_are_the_rfcs_examples() {
        // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
        assert_eq!(encode_frame(Opcode::Text, b"Hello"), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // 256 bytes and 64 KiB in a single unmasked binary frame.
        assert_eq!(Header::new(Opcode::Binary, 256).as_bytes(), [0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(Header::new(Opcode::Binary, 65536).as_bytes(), [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        assert_eq!(Header::new(Opcode::Text, 125).as_bytes(), [0x81, 125]);
        assert_eq!(Header::new(Opcode::Text, 65535).as_bytes(), [0x81, 126, 0xFF, 0xFF]);
        // An unmasked ping with "Hello" as its body.
        assert_eq!(encode_frame(Opcode::Ping, b"Hello"), [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn a_close_frame_carries_its_code_and_a_reason_cut_to_fit() {
        assert_eq!(encode_close(4008, "slow"), [0x88, 6, 0x0F, 0xA8, b's', b'l', b'o', b'w']);
        let long = "é".repeat(100);
        let frame = encode_close(1000, &long);
        assert!(frame.len() - 2 <= 125);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }

    #[test]
    fn masked_text_is_the_rfcs_example() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(decode_all(&frame).unwrap(), [Message::Text("Hello".into())]);
    }

    #[test]
    fn a_message_arriving_a_byte_at_a_time_comes_out_once_whole() {
        let frame = client_frame(0x81, &[b'x'; 300]);
        let mut decoder = Decoder::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in frame {
            buf.extend_from_slice(&[byte]);
            if let Some(message) = decoder.decode(&mut buf).unwrap() {
                got.push(message);
            }
        }
        assert_eq!(got, [Message::Text("x".repeat(300))]);
        assert!(buf.is_empty());
    }

    #[test]
    fn fragments_are_joined_and_control_frames_between_them_pass() {
        // "Hel" + ping + "lo", then a binary message of 70,000 bytes with a 64-bit length.
        let mut bytes = client_frame(0x01, b"Hel");
        bytes.extend(client_frame(0x89, b"p"));
        bytes.extend(client_frame(0x80, b"lo"));
        bytes.extend(client_frame(0x82, &vec![7u8; 70_000]));
        let got = decode_all(&bytes).unwrap();
        assert_eq!(got[0], Message::Ping(Bytes::from_static(b"p")));
        assert_eq!(got[1], Message::Text("Hello".into()));
        assert_eq!(got[2], Message::Binary(Bytes::from(vec![7u8; 70_000])));
    }

    #[test]
    fn close_frames_are_read_with_their_code_and_checked() {
        assert_eq!(decode_all(&client_frame(0x88, b"")).unwrap(), [Message::Close(None)]);
        let mut body = 1001u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        assert_eq!(decode_all(&client_frame(0x88, &body)).unwrap(), [Message::Close(Some((1001, "bye".into())))]);
        assert_eq!(decode_all(&client_frame(0x88, b"x")), Err(WsError::Protocol("close frame with a one-byte body")));
        assert_eq!(
            decode_all(&client_frame(0x88, &1005u16.to_be_bytes())),
            Err(WsError::Protocol("invalid close code"))
        );
        let mut bad = 1000u16.to_be_bytes().to_vec();
        bad.push(0xFF);
        assert_eq!(decode_all(&client_frame(0x88, &bad)), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn what_a_server_must_refuse_is_refused_with_the_right_code() {
        let cases: [(Vec<u8>, u16); 8] = [
            // Unmasked client frame.
            (vec![0x81, 0x01, b'x'], CLOSE_PROTOCOL_ERROR),
            // RSV1 without an extension.
            (client_frame(0xC1, b"x"), CLOSE_PROTOCOL_ERROR),
            // Reserved opcode 3.
            (client_frame(0x83, b"x"), CLOSE_PROTOCOL_ERROR),
            // A fragmented ping.
            (client_frame(0x09, b"x"), CLOSE_PROTOCOL_ERROR),
            // A ping of 126 bytes.
            (client_frame(0x89, &[0; 126]), CLOSE_PROTOCOL_ERROR),
            // A continuation with nothing to continue.
            (client_frame(0x80, b"x"), CLOSE_PROTOCOL_ERROR),
            // Text that is not UTF-8.
            (client_frame(0x81, &[0xC3, 0x28]), CLOSE_INVALID_PAYLOAD),
            // A new text message inside a fragmented one.
            ([client_frame(0x01, b"a"), client_frame(0x81, b"b")].concat(), CLOSE_PROTOCOL_ERROR),
        ];
        for (bytes, code) in cases {
            let err = decode_all(&bytes).expect_err("refused");
            assert_eq!(err.close_code(), code, "{err}");
        }
    }

    #[test]
    fn a_message_past_the_limit_is_refused_from_its_header_alone() {
        let mut decoder = Decoder::new(1000);
        // Only the header of a 2,000-byte frame has arrived: the decoder refuses it without waiting for the body.
        let mut buf = BytesMut::from(&client_frame(0x81, &[b'x'; 2000])[..8]);
        assert_eq!(decoder.decode(&mut buf), Err(WsError::TooBig(2000)));
        // Fragments count together.
        let mut decoder = Decoder::new(1000);
        let mut buf =
            BytesMut::from(&[client_frame(0x01, &[b'x'; 600]), client_frame(0x80, &[b'x'; 600])].concat()[..]);
        assert_eq!(decoder.decode(&mut buf), Err(WsError::TooBig(1200)));
        // Exactly the limit passes.
        let mut decoder = Decoder::new(1000);
        let mut buf = BytesMut::from(&client_frame(0x81, &[b'x'; 1000])[..]);
        assert!(matches!(decoder.decode(&mut buf), Ok(Some(Message::Text(t))) if t.len() == 1000));
    }
}
