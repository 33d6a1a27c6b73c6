//! Server channel names for filtered model subscriptions: `<base>|k:v|k:v`.
//!
//! The grammar is SwampDragon's (docs/protocol.md, Filters): the base, a `|`, then `key:value` pairs joined by `|` with keys
//! sorted by byte order, so one filter always names one channel. Unlike SwampDragon, which formatted values with
//! Python's `str()` and `quote_plus` (so `False` and `"False"` collided), values are JSON-encoded: strings keep their
//! quotes and types survive. Because a JSON string may itself contain `|` and `:`, parsing splits only outside JSON
//! strings.

use std::fmt::Write;

use crate::Args;

/// A string that is not a model channel name.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ChannelNameError {
    /// There is no `|` ending the base.
    #[error("channel name {0:?} has no '|' after its base; model channel names look like base|key:value")]
    MissingSeparator(String),
    /// A filter segment has no `:` between key and value.
    #[error("filter segment {0:?} has no ':'; write each filter as key:value")]
    MissingColon(String),
    /// A filter value is not valid JSON.
    #[error("value of filter key {key:?} is not valid JSON: {source}")]
    BadValue {
        /// The key whose value failed to parse.
        key: String,
        /// Why it failed.
        source: serde_json::Error,
    },
    /// A key repeats or comes before the previous one, so the name is not the one drakon would build.
    #[error("filter key {0:?} is repeated or out of order; keys must be unique and sorted by byte order")]
    UnsortedKey(String),
}

/// Builds the channel name of a model subscription with `filter` on `base`.
///
/// Keys are filter lookups such as `todo_list__id`; they must not contain `:` or `|`, which the grammar reserves.
///
/// ```
/// use drakon_protocol::model_channel_name;
/// use serde_json::json;
///
/// let filter = json!({"todo_list__id": 1, "done": false}).as_object().unwrap().clone();
/// assert_eq!(model_channel_name("todo-item", &filter), "todo-item|done:false|todo_list__id:1");
/// assert_eq!(model_channel_name("todo-list", &Default::default()), "todo-list|");
/// ```
pub fn model_channel_name(base: &str, filter: &Args) -> String {
    let mut entries: Vec<_> = filter.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut name = String::with_capacity(base.len() + 1 + 16 * entries.len());
    name.push_str(base);
    name.push('|');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            name.push('|');
        }
        // Value's Display is its compact JSON encoding, written here without a temporary string.
        write!(name, "{key}:{value}").expect("writing to a String cannot fail");
    }
    name
}

/// Splits a model channel name into its base and filter; the inverse of [`model_channel_name`].
///
/// ```
/// use drakon_protocol::parse_model_channel_name;
///
/// let (base, filter) = parse_model_channel_name(r#"todo-item|text:"a|b:c""#)?;
/// assert_eq!(base, "todo-item");
/// assert_eq!(filter["text"], "a|b:c");
/// # Ok::<(), drakon_protocol::ChannelNameError>(())
/// ```
pub fn parse_model_channel_name(name: &str) -> Result<(String, Args), ChannelNameError> {
    let (base, filters) = name.split_once('|').ok_or_else(|| ChannelNameError::MissingSeparator(name.to_owned()))?;
    let mut filter = Args::new();
    let mut previous: Option<&str> = None;
    // "base|" is the unfiltered channel; after that every '|' must start another key:value segment.
    let mut rest = (!filters.is_empty()).then_some(filters);
    while let Some(segment) = rest {
        // A key ends at the first ':'; reaching a '|' first means the segment has no value.
        let (key, after_key) = match segment.find([':', '|']) {
            Some(i) if segment.as_bytes()[i] == b':' => (&segment[..i], &segment[i + 1..]),
            Some(i) => return Err(ChannelNameError::MissingColon(segment[..i].to_owned())),
            None => return Err(ChannelNameError::MissingColon(segment.to_owned())),
        };
        if previous.is_some_and(|previous| previous >= key) {
            return Err(ChannelNameError::UnsortedKey(key.to_owned()));
        }
        let (value, next) = split_json_value(after_key);
        let value =
            serde_json::from_str(value).map_err(|source| ChannelNameError::BadValue { key: key.to_owned(), source })?;
        filter.insert(key.to_owned(), value);
        previous = Some(key);
        rest = next;
    }
    Ok((base.to_owned(), filter))
}

/// Splits `s` at the first `|` outside a JSON string: the value before it and what follows, if there was a `|`.
///
/// Only string state matters: `|` cannot appear in JSON outside strings, and inside them it is never escaped. Byte
/// scanning is safe on UTF-8 because continuation bytes never equal an ASCII byte.
fn split_json_value(s: &str) -> (&str, Option<&str>) {
    let mut in_string = false;
    let mut escaped = false;
    for (i, byte) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if in_string {
            match byte {
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_string = true;
        } else if byte == b'|' {
            return (&s[..i], Some(&s[i + 1..]));
        }
    }
    (s, None)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn args(value: Value) -> Args {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn names_table() {
        let table = [
            ("todo-item", json!({"todo_list__id": 1}), "todo-item|todo_list__id:1"),
            ("todolist", json!({}), "todolist|"),
            ("plain", json!({"number__gt": 5}), "plain|number__gt:5"),
            ("todo-item", json!({"todo_list__id": 1, "done": false}), "todo-item|done:false|todo_list__id:1"),
            ("todo-item", json!({"text": "foo bar"}), r#"todo-item|text:"foo bar""#),
            ("todo-item", json!({"text": "False"}), r#"todo-item|text:"False""#),
            ("todo-item", json!({"id__in": [1, 2]}), "todo-item|id__in:[1,2]"),
            ("todo-item", json!({"tag__in": ["a", "b"]}), r#"todo-item|tag__in:["a","b"]"#),
            ("todo-item", json!({"due": null}), "todo-item|due:null"),
            ("m", json!({"price__lt": 2.5}), "m|price__lt:2.5"),
            ("m", json!({"text": "a|b:c"}), r#"m|text:"a|b:c""#),
            ("m", json!({"text": "say \"hi\" \\"}), r#"m|text:"say \"hi\" \\""#),
            ("m", json!({"b": 1, "B": 2, "a": 3, "a_": 4}), "m|B:2|a:3|a_:4|b:1"),
        ];
        for (base, filter, expected) in table {
            let filter = args(filter);
            let name = model_channel_name(base, &filter);
            assert_eq!(name, expected);
            let (parsed_base, parsed_filter) = parse_model_channel_name(&name).unwrap();
            assert_eq!((parsed_base.as_str(), &parsed_filter), (base, &filter), "{name}");
        }
    }

    #[test]
    fn plain_channel_names_with_a_bar_parse_as_unfiltered() {
        let (base, filter) = parse_model_channel_name("|").unwrap();
        assert_eq!((base.as_str(), filter.len()), ("", 0));
    }

    #[test]
    fn bad_names() {
        // (name, expected error variant as text prefix of Debug)
        let table = [
            ("chatroom", "MissingSeparator"),
            ("m|a", "MissingColon"),
            ("m|a:1|", "MissingColon"),
            ("m|a:1|b", "MissingColon"),
            ("m|a|b:1", "MissingColon"),
            ("m|a:tru", "BadValue"),
            ("m|a:", "BadValue"),
            (r#"m|a:"x|b:1"#, "BadValue"),
            ("m|a:1 2", "BadValue"),
            ("m|b:1|a:2", "UnsortedKey"),
            ("m|a:1|a:2", "UnsortedKey"),
        ];
        for (name, variant) in table {
            let err = parse_model_channel_name(name).unwrap_err();
            assert!(format!("{err:?}").starts_with(variant), "{name}: {err:?}");
            let message = err.to_string();
            assert!(!message.ends_with('.') && !message.starts_with(char::is_uppercase), "{message}");
        }
    }

    /// JSON values whose encoding parses back to the same value. Floats are limited to short dyadic fractions
    /// because serde_json's default float parser is only best-effort for long mantissas (exact parsing needs its
    /// `float_roundtrip` feature); strings lean on the characters the scanner must get right.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1_000_000i32..1_000_000, 0u32..8).prop_map(|(m, e)| Value::from(f64::from(m) / f64::from(1 << e))),
            r#"[a-z|:"\\ ]{0,8}"#.prop_map(Value::String),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((r#"[a-z|:"]{0,4}"#, inner), 0..4)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    fn filter() -> impl Strategy<Value = Args> {
        prop::collection::vec(("[a-zA-Z_]{1,12}", json_value()), 0..5).prop_map(|entries| entries.into_iter().collect())
    }

    proptest! {
        #[test]
        fn names_round_trip(base in "[^|]{0,16}", filter in filter()) {
            let name = model_channel_name(&base, &filter);
            let (parsed_base, parsed_filter) = parse_model_channel_name(&name).unwrap();
            prop_assert_eq!(&parsed_base, &base);
            prop_assert_eq!(&parsed_filter, &filter);
            prop_assert_eq!(model_channel_name(&parsed_base, &parsed_filter), name);
        }
    }
}
