//! The WebSocket frames (RFC 6455 §5.2) the floor server speaks: whole unmasked frames it sends, whole masked frames
//! the clients send. No extensions and no fragmented messages: the load generator uses neither.

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// Largest client frame accepted: subscribe requests are a few hundred bytes.
const MAX_CLIENT_PAYLOAD: usize = 64 * 1024;

/// A whole server frame: FIN set, unmasked, header then payload.
pub fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A client frame, unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A frame, and how many bytes of the buffer it took.
    Frame(Frame, usize),
    /// The buffer holds only the start of a frame.
    Incomplete,
    /// Not a frame this server accepts; the connection is closed with 1002.
    Invalid(&'static str),
}

/// Decodes the client frame at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    let [first, second, ..] = *buf else { return Decoded::Incomplete };
    if first & 0x70 != 0 {
        return Decoded::Invalid("reserved bits set without an extension");
    }
    if first & 0x80 == 0 || first & 0x0F == 0 {
        return Decoded::Invalid("fragmented messages are not supported");
    }
    if second & 0x80 == 0 {
        return Decoded::Invalid("client frames must be masked");
    }
    let (len, mut at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Decoded::Incomplete,
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
            None => return Decoded::Incomplete,
        },
        n => (u64::from(n), 2),
    };
    if len > MAX_CLIENT_PAYLOAD as u64 {
        return Decoded::Invalid("frame too large");
    }
    let Some(mask) = buf.get(at..at + 4) else { return Decoded::Incomplete };
    let mask = [mask[0], mask[1], mask[2], mask[3]];
    at += 4;
    let end = at + len as usize;
    let Some(masked) = buf.get(at..end) else { return Decoded::Incomplete };
    let payload = masked.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
    Decoded::Frame(Frame { opcode: first & 0x0F, payload }, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_each_length_form() {
        assert_eq!(encode(TEXT, b"hi"), [0x81, 0x02, b'h', b'i']);
        assert_eq!(encode(PONG, b""), [0x8A, 0x00]);
        let mid = encode(TEXT, &[b'x'; 300]);
        assert_eq!(mid[..4], [0x81, 126, 0x01, 0x2C]);
        assert_eq!(mid.len(), 4 + 300);
        let big = encode(BINARY, &vec![0; 70_000]);
        assert_eq!(big[..10], [0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
        assert_eq!(big.len(), 10 + 70_000);
    }

    #[test]
    fn decodes_masked_client_frames() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let want = Frame { opcode: TEXT, payload: b"Hello".to_vec() };
        assert_eq!(decode(&hello), Decoded::Frame(want, hello.len()));
        // Followed by more bytes: only the first frame is taken.
        let mut two = hello.to_vec();
        two.extend_from_slice(&hello[..3]);
        assert!(matches!(decode(&two), Decoded::Frame(_, 11)));
        // A 16-bit length.
        let mut long = vec![0x81, 0xFE, 0x00, 0x80, 0, 0, 0, 0];
        long.extend_from_slice(&[b'a'; 128]);
        assert_eq!(decode(&long), Decoded::Frame(Frame { opcode: TEXT, payload: vec![b'a'; 128] }, long.len()));
    }

    #[test]
    fn waits_for_the_rest_of_a_frame() {
        let hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        for cut in 0..hello.len() {
            assert_eq!(decode(&hello[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
        assert_eq!(decode(&[0x81, 0xFE, 0x00]), Decoded::Incomplete);
        assert_eq!(decode(&[0x81, 0xFF, 0, 0, 0, 0]), Decoded::Incomplete);
    }

    #[test]
    fn refuses_what_it_does_not_speak() {
        let table: &[(&[u8], &str)] = &[
            (&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o'], "client frames must be masked"),
            (&[0x01, 0x80, 0, 0, 0, 0], "fragmented messages are not supported"),
            (&[0x80, 0x80, 0, 0, 0, 0], "fragmented messages are not supported"),
            (&[0xC1, 0x80, 0, 0, 0, 0], "reserved bits set without an extension"),
            (&[0x82, 0xFF, 0, 0, 0, 0, 0x10, 0, 0, 0], "frame too large"),
        ];
        for (bytes, why) in table {
            assert_eq!(decode(bytes), Decoded::Invalid(why), "{bytes:x?}");
        }
    }
}
