//! The client side of RFC 6455 §5.2 that a worker connection needs once it is subscribed: a reader that parses the
//! server's frames in place in one reused buffer, and the masked frames a client sends (subscribe requests, pongs,
//! the closing reply). No extensions and no fragmented messages: drakon, the baseline and the floor send neither.
//!
//! This is the generator's hot path. tokio-tungstenite copied each frame out of its buffer, validated it as UTF-8
//! and allocated a `Message` for it; here a text frame is a slice of the read buffer handed straight to the caller.

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// The read buffer a connection starts with, and returns to when it is empty: frames are a few hundred bytes, and
/// a worker holds thousands of connections.
pub const READ_BUFFER: usize = 4096;

/// Largest server frame accepted; the buffer grows to hold a bigger frame than [`READ_BUFFER`], up to this.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The mask of every frame this client sends. RFC 6455 wants an unpredictable one to defeat cache poisoning by
/// intermediaries; a benchmark on loopback has none, so a fixed mask saves a random number per frame.
const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// One server frame: its opcode and unmasked payload, borrowed from the reader's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// Where the first frame of a buffer is: its opcode, and the byte ranges of its payload and of the whole frame.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    opcode: u8,
    payload_at: usize,
    end: usize,
}

/// Parses the header of the server frame at the start of `buf`: `Ok(None)` until the whole frame is there.
fn parse(buf: &[u8]) -> Result<Option<Header>, &'static str> {
    let [first, second, ..] = *buf else { return Ok(None) };
    if first & 0x70 != 0 {
        return Err("reserved bits set without an extension");
    }
    if first & 0x80 == 0 || first & 0x0F == 0 {
        return Err("fragmented messages are not supported");
    }
    if second & 0x80 != 0 {
        return Err("server frames must not be masked");
    }
    let (len, payload_at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len > (MAX_FRAME - payload_at) as u64 {
        return Err("frame too large");
    }
    let end = payload_at + len as usize;
    Ok((buf.len() >= end).then_some(Header { opcode: first & 0x0F, payload_at, end }))
}

/// The bytes read from one connection and not yet taken as frames: `buf[start..end]`.
#[derive(Debug)]
pub struct Reader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for Reader {
    fn default() -> Self {
        Reader { buf: vec![0; READ_BUFFER], start: 0, end: 0 }
    }
}

impl Reader {
    /// Room for the next read, after the bytes already held. Moves a partial frame to the front first, and grows
    /// the buffer only when a single frame fills it.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
            if self.buf.len() > READ_BUFFER {
                self.buf = vec![0; READ_BUFFER];
            }
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end == self.buf.len() {
            // One frame larger than the buffer; `parse` has already refused anything beyond MAX_FRAME.
            let grown = (self.buf.len() * 2).min(MAX_FRAME);
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Records that a read put `n` bytes into [`Reader::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end += n;
        debug_assert!(self.end <= self.buf.len());
    }

    /// The bytes held and not yet taken.
    pub fn held(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops the first `n` held bytes (a handshake response that is not frames).
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
    }

    /// Takes the next whole frame other than a ping, or `Ok(None)` when more bytes must be read first. Pings are
    /// answered on the way: their pongs are appended to `pongs`, for the caller to send.
    pub fn next_frame(&mut self, pongs: &mut Vec<u8>) -> Result<Option<Frame<'_>>, &'static str> {
        loop {
            let Some(h) = parse(self.held())? else { return Ok(None) };
            let payload = self.start + h.payload_at..self.start + h.end;
            self.start += h.end;
            if h.opcode == PING {
                encode_masked(PONG, &self.buf[payload], pongs);
                continue;
            }
            return Ok(Some(Frame { opcode: h.opcode, payload: &self.buf[payload] }));
        }
    }
}

/// Appends a whole client frame to `out`: FIN set, masked with [`MASK`].
pub fn encode_masked(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

/// What a close frame's payload says, as the worker reports it: `close <code> <reason>`, or `closed` when the
/// frame carries no code.
pub fn describe_close(payload: &[u8]) -> String {
    match payload {
        [hi, lo, reason @ ..] => {
            format!("close {} {}", u16::from_be_bytes([*hi, *lo]), String::from_utf8_lossy(reason))
        }
        _ => "closed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The floor server's encoder: a server frame, FIN set, unmasked.
    use crate::floor::frame::encode as server;

    /// Feeds `bytes` to a reader in reads of at most `chunk` bytes, and returns every frame taken.
    fn read_all(bytes: &[u8], chunk: usize) -> Vec<(u8, Vec<u8>)> {
        let mut reader = Reader::default();
        let mut frames = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let spare = reader.spare();
            let n = spare.len().min(chunk).min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            reader.filled(n);
            rest = &rest[n..];
            while let Some(f) = reader.next_frame(&mut Vec::new()).unwrap() {
                frames.push((f.opcode, f.payload.to_vec()));
            }
        }
        assert!(reader.held().is_empty(), "bytes left over");
        frames
    }

    #[test]
    fn reads_each_length_form_whatever_the_reads() {
        let payloads: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"{\"ts\":1}".to_vec(),
            vec![b'a'; 125],
            vec![b'b'; 126],
            vec![b'c'; 300],
            vec![b'd'; 70_000],
        ];
        let mut stream = Vec::new();
        for p in &payloads {
            stream.extend_from_slice(&server(TEXT, p));
        }
        assert_eq!(server(TEXT, &payloads[4])[..4], [0x81, 126, 0x01, 0x2C]);
        assert_eq!(server(TEXT, &payloads[5])[..10], [0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
        let want: Vec<(u8, Vec<u8>)> = payloads.iter().map(|p| (TEXT, p.clone())).collect();
        // One byte at a time splits every header and payload; a large chunk puts many frames in one read.
        for chunk in [1, 2, 3, 7, 100, 4096, usize::MAX] {
            assert_eq!(read_all(&stream, chunk), want, "reads of {chunk} bytes");
        }
    }

    #[test]
    fn many_frames_in_one_read_share_the_buffer() {
        let mut stream = Vec::new();
        for i in 0..20 {
            stream.extend_from_slice(&server(TEXT, format!("{{\"ts\":{i}}}").as_bytes()));
        }
        stream.extend_from_slice(&server(BINARY, b"\x00\xff"));
        let mut reader = Reader::default();
        reader.spare()[..stream.len()].copy_from_slice(&stream);
        reader.filled(stream.len());
        for i in 0..20 {
            let f = reader.next_frame(&mut Vec::new()).unwrap().unwrap();
            assert_eq!((f.opcode, f.payload), (TEXT, format!("{{\"ts\":{i}}}").as_bytes()));
        }
        assert_eq!(reader.next_frame(&mut Vec::new()).unwrap(), Some(Frame { opcode: BINARY, payload: b"\x00\xff" }));
        assert_eq!(reader.next_frame(&mut Vec::new()).unwrap(), None);
        // Emptied, the buffer starts over at its original size.
        assert_eq!(reader.spare().len(), READ_BUFFER);
    }

    #[test]
    fn a_partial_frame_waits_and_keeps_its_place() {
        let hello = server(TEXT, b"Hello");
        let mut reader = Reader::default();
        for (i, b) in hello.iter().enumerate() {
            assert_eq!(reader.next_frame(&mut Vec::new()).unwrap(), None, "after {i} bytes");
            reader.spare()[0] = *b;
            reader.filled(1);
        }
        assert_eq!(reader.next_frame(&mut Vec::new()).unwrap(), Some(Frame { opcode: TEXT, payload: b"Hello" }));
    }

    #[test]
    fn handshake_leftovers_are_read_as_frames() {
        let mut bytes = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
        let head = bytes.len();
        bytes.extend_from_slice(&server(TEXT, b"early"));
        let mut reader = Reader::default();
        reader.spare()[..bytes.len()].copy_from_slice(&bytes);
        reader.filled(bytes.len());
        reader.consume(head);
        assert_eq!(reader.next_frame(&mut Vec::new()).unwrap(), Some(Frame { opcode: TEXT, payload: b"early" }));
    }

    #[test]
    fn refuses_what_a_server_must_not_send() {
        let table: &[(&[u8], &str)] = &[
            (&[0x81, 0x85, 0, 0, 0, 0, b'H', b'e', b'l', b'l', b'o'], "server frames must not be masked"),
            (&[0x01, 0x00], "fragmented messages are not supported"),
            (&[0x80, 0x00], "fragmented messages are not supported"),
            (&[0xC1, 0x00], "reserved bits set without an extension"),
            (&[0x82, 0x7F, 0, 0, 0, 0, 0x10, 0, 0, 0], "frame too large"),
        ];
        for (bytes, why) in table {
            let mut reader = Reader::default();
            reader.spare()[..bytes.len()].copy_from_slice(bytes);
            reader.filled(bytes.len());
            assert_eq!(reader.next_frame(&mut Vec::new()), Err(*why), "{bytes:x?}");
        }
    }

    #[test]
    fn a_ping_is_answered_with_a_masked_pong() {
        let mut stream = server(PING, b"hi");
        stream.extend_from_slice(&server(PING, b""));
        stream.extend_from_slice(&server(TEXT, b"after"));
        let mut reader = Reader::default();
        reader.spare()[..stream.len()].copy_from_slice(&stream);
        reader.filled(stream.len());
        let mut pongs = Vec::new();
        // The pings are not handed out: the caller gets the next data frame and the pongs to send.
        assert_eq!(reader.next_frame(&mut pongs).unwrap(), Some(Frame { opcode: TEXT, payload: b"after" }));
        assert_eq!(
            pongs,
            [
                0x8A,
                0x82,
                0x37,
                0xFA,
                0x21,
                0x3D,
                b'h' ^ 0x37,
                b'i' ^ 0xFA, // "hi", masked
                0x8A,
                0x80,
                0x37,
                0xFA,
                0x21,
                0x3D, // empty: header and mask only
            ]
        );
    }

    #[test]
    fn masked_frames_use_each_length_form() {
        // RFC 6455 §5.7's masked "Hello", with that example's mask.
        let mut hello = Vec::new();
        encode_masked(TEXT, b"Hello", &mut hello);
        assert_eq!(hello, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        let mut mid = Vec::new();
        encode_masked(TEXT, &[0; 300], &mut mid);
        assert_eq!(mid[..8], [0x81, 0xFE, 0x01, 0x2C, 0x37, 0xFA, 0x21, 0x3D]);
        assert_eq!(mid.len(), 8 + 300);
        let mut big = Vec::new();
        encode_masked(BINARY, &[0; 70_000], &mut big);
        assert_eq!(big[..10], [0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
        assert_eq!(big.len(), 14 + 70_000);
    }

    #[test]
    fn close_frames_read_as_code_and_reason() {
        let close = server(CLOSE, b"\x03\xe8bye");
        let mut reader = Reader::default();
        reader.spare()[..close.len()].copy_from_slice(&close);
        reader.filled(close.len());
        let f = reader.next_frame(&mut Vec::new()).unwrap().unwrap();
        assert_eq!(f.opcode, CLOSE);
        assert_eq!(describe_close(f.payload), "close 1000 bye");
        assert_eq!(describe_close(b"\x03\xf1"), "close 1009 ");
        assert_eq!(describe_close(b""), "closed");
    }
}
