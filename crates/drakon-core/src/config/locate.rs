//! Where things are in the file: the line of each model, field, route and route key as reading meets them, so that
//! a problem [`Schema::finish`](crate::schema::Schema::finish) finds, which knows nothing of the file, can be reported at its line.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::schema::SchemaProblem;

/// The 1-based line holding byte `offset` of `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count() + 1
}

/// The file's text and the line of each declared model, field, route and route key, keyed by the path a
/// [`SchemaProblem`] uses (`["models", "todo_item", "fields", "text"]`, `["routes", "todo-item", "page_size"]`).
pub(super) struct Anchors<'a> {
    text: &'a str,
    lines: BTreeMap<Vec<String>, usize>,
}

impl<'a> Anchors<'a> {
    pub(super) fn new(text: &'a str) -> Anchors<'a> {
        Anchors { text, lines: BTreeMap::new() }
    }

    /// The line where `span` starts.
    pub(super) fn line(&self, span: Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    /// Records that the thing at `path` is declared at `span`.
    pub(super) fn record(&mut self, path: &[&str], span: Range<usize>) {
        let line = self.line(span);
        self.lines.insert(path.iter().map(|s| s.to_string()).collect(), line);
    }

    /// The line a problem from [`Schema::finish`](crate::schema::Schema::finish) is about: the most specific declared thing its path names.
    pub(super) fn locate(&self, problem: &SchemaProblem) -> Option<usize> {
        let mut path = problem.path.clone();
        if path.len() == 2 && path[0] == "routes" {
            path.extend(route_key_named_by(&problem.message));
        }
        while !path.is_empty() {
            if let Some(line) = self.lines.get(&path) {
                return Some(*line);
            }
            path.pop();
        }
        None
    }
}

/// The route key a [`Schema::validate`](crate::schema::Schema::validate) message is about, judged from how the message starts, so that the problem
/// points at that key rather than at the route header. A message that names no key, or a key the route left out,
/// falls back to the header.
fn route_key_named_by(message: &str) -> Vec<String> {
    let mut words = message.split(' ');
    match (words.next(), words.next()) {
        (Some("param"), Some(name)) => vec!["params".into(), name.trim_matches('`').into()],
        (Some("fixed"), Some("filter")) => vec!["filters".into()],
        (Some("unknown"), Some("model")) => vec!["model".into()],
        (Some("channel"), _) | (Some("a"), Some("channel")) => vec!["channels".into()],
        (Some(key @ ("publish_fields" | "update_fields" | "create_fields" | "page_size")), _) => vec![key.into()],
        _ => Vec::new(),
    }
}
