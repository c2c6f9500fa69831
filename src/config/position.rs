//! Where a key is in the config text, so errors found after parsing (a
//! value out of range, a sink no route uses) name the line as parse errors
//! do.

use toml_edit::{Document, Item, Key, Value};

/// The 1-based line of `key` (`sinks.lake.fresh`, `route[2].match`,
/// `forward.security.clients[0].network`), or of the nearest enclosing
/// table or value the text has (a default has no line of its own).
pub(super) fn line_of(text: &str, key: &str) -> Option<usize> {
    let doc = Document::parse(text).ok()?;
    let mut at: Option<std::ops::Range<usize>> = None;
    let mut node = Node::Item(doc.as_item());
    for seg in key.split('.') {
        let (name, index) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let Some((k, child)) = node.get(name) else {
            break;
        };
        at = k.span().or_else(|| child.span()).or(at);
        node = child;
        if let Some(i) = index {
            let Some(child) = node.index(i) else {
                break;
            };
            at = child.span().or(at);
            node = child;
        }
    }
    let start = at?.start;
    Some(text.get(..start)?.matches('\n').count() + 1)
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn get(self, name: &str) -> Option<(&'a Key, Node<'a>)> {
        match self {
            Node::Item(Item::Table(t)) | Node::Table(t) => {
                let (k, v) = t.get_key_value(name)?;
                Some((k, Node::Item(v)))
            }
            Node::Item(Item::Value(Value::InlineTable(t))) | Node::Value(Value::InlineTable(t)) => {
                let (k, v) = t.get_key_value(name)?;
                Some((k, Node::Item(v)))
            }
            _ => None,
        }
    }

    fn index(self, i: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(Item::ArrayOfTables(a)) => a.get(i).map(Node::Table),
            Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)) => {
                a.get(i).map(Node::Value)
            }
            _ => None,
        }
    }

    fn span(self) -> Option<std::ops::Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
            Node::Table(t) => t.span(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tables_arrays_and_fallbacks() {
        let text = "node_id = 'n'\n[roll]\nfreshness = '9h'\n\n[sinks.lake]\ntype = 'local'\npath = '/x'\n\n[[route]]\nmatch = 'a'\n[[route]]\nmatch = 'b'\n[forward.security]\nclients = [{network = '10.0.0.0/8'}, {host = '1.2.3.4'}]\n";
        assert_eq!(line_of(text, "roll.freshness"), Some(3));
        assert_eq!(line_of(text, "sinks.lake.path"), Some(7));
        assert_eq!(
            line_of(text, "sinks.lake.fresh"),
            Some(5),
            "the table, for a default"
        );
        assert_eq!(line_of(text, "route[1].match"), Some(12));
        assert_eq!(line_of(text, "forward.security.clients[1].host"), Some(14));
        assert_eq!(line_of(text, "wal.segment_bytes"), None);
    }
}
