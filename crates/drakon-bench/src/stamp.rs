//! Send timestamps inside payloads, and the cheap scan that reads them back.
//!
//! Every measured message carries `"ts":<microseconds since the Unix epoch>` (the wall clock, shared by every
//! process on the machine). A receiver finds the first `"ts":` in the frame and reads the digits after it, without
//! building a JSON tree: a load generator that parsed every frame would spend more CPU per delivery than the server
//! it measures, and would end up measuring itself.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, on the wall clock every process of the machine shares.
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

const KEY: &[u8] = b"\"ts\":";

/// The timestamp of a frame: the integer after its first `"ts":`, or `None` when the frame carries none.
pub fn find_stamp(frame: &[u8]) -> Option<u64> {
    // memchr-style: jump from quote to quote rather than comparing at every byte.
    let mut from = 0;
    while let Some(pos) = frame[from..].iter().position(|&b| b == b'"') {
        let at = from + pos;
        if frame[at..].starts_with(KEY) {
            let digits = &frame[at + KEY.len()..];
            let mut value: u64 = 0;
            let mut seen = false;
            for &b in digits {
                match b {
                    b'0'..=b'9' => {
                        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                        seen = true;
                    }
                    b' ' if !seen => {}
                    _ => break,
                }
            }
            return seen.then_some(value);
        }
        from = at + 1;
    }
    None
}

/// A JSON object `{"ts":…,"seq":…,"pad":"xx…"}` padded so that it is `size` bytes long (or as short as it can be).
pub fn payload(ts: u64, seq: u64, size: usize) -> String {
    let head = format!("{{\"ts\":{ts},\"seq\":{seq},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut out = String::with_capacity(head.len() + pad + 2);
    out.push_str(&head);
    out.extend(std::iter::repeat_n('x', pad));
    out.push_str("\"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_stamp_in_real_frames() {
        let table: &[(&str, Option<u64>)] = &[
            (r#"{"channel":"bench.fan","data":{"ts":1764226000123456,"seq":3,"pad":"xx"}}"#, Some(1764226000123456)),
            (
                r#"{"channel":"item|grp:4","action":"updated","data":{"id":7,"_type":"item","ts":17,"seq":2},"offset":9}"#,
                Some(17),
            ),
            (r#"{"channel":"x","data":{"pad":"\"ts\" is not here","ts": 5}}"#, Some(5)),
            (r#"{"data":"subscribed","context":{"client_callback_name":"s1"}}"#, None),
            (r#"{"ts":"not a number"}"#, None),
            (r#"{"ts":99999999999999999999999}"#, None),
            ("", None),
        ];
        for (frame, want) in table {
            assert_eq!(find_stamp(frame.as_bytes()), *want, "{frame}");
        }
    }

    #[test]
    fn payload_has_the_asked_size_and_parses() {
        let p = payload(1764226000123456, 42, 100);
        assert_eq!(p.len(), 100);
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["ts"], 1764226000123456u64);
        assert_eq!(v["seq"], 42);
        assert_eq!(find_stamp(p.as_bytes()), Some(1764226000123456));
        // Too small a size still gives valid JSON.
        assert!(serde_json::from_str::<serde_json::Value>(&payload(1, 1, 3)).is_ok());
    }
}
