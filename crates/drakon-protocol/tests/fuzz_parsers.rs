//! Hostile input for the two parsers a client reaches first, as a bounded fuzz run that CI repeats: the WebSocket
//! frame decoder and the native protocol's frame parser. Whatever the bytes, they answer with a value or an error,
//! never a panic, and an error always carries the close code or error code the protocol defines for it.

use bytes::BytesMut;
use drakon_protocol::websocket::{Decoder, Message};
use drakon_protocol::{ClientFrame, ErrorCode, parse_frame};
use proptest::prelude::*;

/// Bytes that look like frames often enough to get past the first checks: a plausible header, then anything.
fn frame_like() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(0x81u8), Just(0x82), Just(0x80), Just(0x01), Just(0x88), Just(0x89), Just(0x8A), any::<u8>()],
        prop_oneof![Just(0x80u8 | 5), Just(0x80 | 126), Just(0x80 | 127), Just(5), any::<u8>()],
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(first, second, rest)| {
            let mut bytes = vec![first, second];
            bytes.extend(rest);
            bytes
        })
}

/// Text that is JSON often enough to reach the envelope's checks.
fn frame_text() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("null".to_owned()),
        Just("1".to_owned()),
        Just("\"x\"".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        "[a-z_]{0,8}".prop_map(|s| format!("\"{s}\"")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
    ];
    let key = prop_oneof![
        Just("route"),
        Just("verb"),
        Just("args"),
        Just("callbackname"),
        Just("heartbeat"),
        Just("_page"),
        Just("x")
    ];
    prop_oneof![
        ".{0,64}",
        proptest::collection::vec((key.clone(), value.clone()), 0..6).prop_map(|pairs| {
            let fields: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", fields.join(","))
        }),
        proptest::collection::vec((key, value), 0..4).prop_map(|pairs| {
            let args: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!(r#"{{"route":"r","verb":"v","args":{{{}}}}}"#, args.join(","))
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn the_frame_decoder_never_panics_and_refuses_with_a_close_code(
        bytes in prop_oneof![proptest::collection::vec(any::<u8>(), 0..400), frame_like()],
        split in 0usize..400,
        limit in prop_oneof![Just(16usize), Just(125), Just(65_536)],
    ) {
        let mut decoder = Decoder::new(limit);
        // The bytes arrive in two pieces, as a socket may hand them over.
        let split = split.min(bytes.len());
        let mut buf = BytesMut::from(&bytes[..split]);
        let mut messages = Vec::new();
        let mut refused = None;
        for piece in [&bytes[split..], &[][..]] {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(message)) => messages.push(message),
                    Ok(None) => break,
                    Err(e) => {
                        refused = Some(e.close_code());
                        break;
                    }
                }
            }
            if refused.is_some() {
                break;
            }
            buf.extend_from_slice(piece);
        }
        if let Some(code) = refused {
            prop_assert!([1002, 1007, 1009].contains(&code), "close code {code}");
        }
        for message in messages {
            if let Message::Text(text) = message {
                prop_assert!(text.len() <= limit);
            }
        }
    }

    #[test]
    fn the_frame_parser_never_panics_and_answers_with_a_client_error(text in frame_text()) {
        match parse_frame(&text) {
            Ok(ClientFrame::Heartbeat) => {}
            Ok(ClientFrame::Request(request)) => {
                prop_assert!(!request.route.is_empty() && !request.verb.is_empty());
                prop_assert!(request.page.is_none_or(|p| p >= 1));
            }
            Err(e) => prop_assert!(e.code() != ErrorCode::Internal, "{text}: {e:?}"),
        }
    }
}
