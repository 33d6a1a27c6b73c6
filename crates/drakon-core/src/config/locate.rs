//! Where things are in the file: the line of each model, field, route, route key and param as reading meets them,
//! so that a problem [`Schema::finish`](crate::schema::Schema::finish) finds, which knows nothing of the file, can
//! be reported at its line. A problem's path names what it is about; nothing here reads its message.

use std::collections::BTreeMap;
use std::ops::Range;

/// The 1-based line holding byte `offset` of `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count() + 1
}

/// The file's text and the line of each declared thing, keyed by the path a
/// [`SchemaProblem`](crate::schema::SchemaProblem) uses for it (`["models", "todo_item", "fields", "text"]`,
/// `["routes", "todo-item", "page_size"]`, `["routes", "todo-item", "params", "list_id"]`).
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

    /// The line of the thing `path` names or, when the file does not spell it out (a key the route leaves to its
    /// default, a field's `unique`), of the nearest enclosing thing that it does: the field or the route.
    /// `None` when nothing on the path is in the file, as for a schema built in Rust.
    pub(super) fn locate(&self, path: &[String]) -> Option<usize> {
        (1..=path.len()).rev().find_map(|len| self.lines.get(&path[..len]).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawConfig;
    use crate::config::read::Reader;

    /// Reads `text` as `parse` does and returns where each thing in it is.
    fn anchors(text: &str) -> Anchors<'_> {
        let raw: RawConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let mut reader = Reader::new(text);
        reader.schema(raw.models, raw.routes);
        let (problems, anchors) = reader.into_parts();
        assert!(problems.is_empty(), "{problems:?}");
        anchors
    }

    #[test]
    fn line_of_counts_the_newlines_before_an_offset() {
        let text = "a\nbc\n\nd";
        let lines: Vec<usize> = (0..text.len()).map(|offset| line_of(text, offset)).collect();
        assert_eq!(lines, [1, 1, 2, 2, 2, 3, 4]);
    }

    #[test]
    fn a_path_is_located_at_the_line_of_what_it_names_or_of_the_nearest_thing_around_it() {
        let text = [
            "[models.todo_item.fields]",      // 1
            "text = { type = \"text\" }",     // 2
            "",                               // 3
            "[models.todo_item.fields.done]", // 4
            "type = \"bool\"",                // 5
            "default = false",                // 6
            "",                               // 7
            "[routes.todo-item]",             // 8
            "model = \"todo_item\"",          // 9
            "publish_fields = [",             // 10
            "  \"text\",",                    // 11
            "]",                              // 12
            "",                               // 13
            "[routes.todo-item.params]",      // 14
            "list_id = \"todo_list__id\"",    // 15
        ]
        .join("\n");
        let anchors = anchors(&text);
        let cases: &[(&[&str], Option<usize>)] = &[
            (&["models", "todo_item"], Some(1)),
            (&["models", "todo_item", "fields", "text"], Some(2)),
            (&["models", "todo_item", "fields", "text", "to"], Some(2)),
            (&["models", "todo_item", "fields", "done"], Some(4)),
            (&["models", "todo_item", "fields", "done", "default"], Some(4)),
            (&["routes", "todo-item"], Some(8)),
            (&["routes", "todo-item", "model"], Some(9)),
            (&["routes", "todo-item", "publish_fields"], Some(10)),
            (&["routes", "todo-item", "page_size"], Some(8)),
            (&["routes", "todo-item", "params", "list_id"], Some(15)),
            (&["routes", "todo-item", "params", "other"], Some(14)),
            (&["routes", "todo-list"], None),
            (&["models", "todo_list", "fields", "text"], None),
            (&[], None),
        ];
        for (path, want) in cases {
            assert_eq!(anchors.locate(&strings(path)), *want, "{path:?}");
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }
}
