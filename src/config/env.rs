//! `${NAME}` and `${NAME:-default}` substitution in config values, so
//! secrets and per-pod values (the host name) come from the environment.
//!
//! Substitution happens in parsed string values, never in the text: a quote
//! or a newline in a secret stays part of that one value and cannot change
//! the configuration around it. Comments are left alone.

/// Replaces every `${NAME}` with `lookup(NAME)`; `$${` stays a literal `${`.
///
/// # Errors
/// Names the variable and the line when it is unset and has no default, or
/// when a `${` is not closed.
pub(super) fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let line = text[..text.len() - rest.len() + i].matches('\n').count() + 1;
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("line {line}: `${{` without a closing `}}`"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "line {line}: `${{{expr}}}` is not a valid variable name"
            ));
        }
        match (lookup(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "line {line}: environment variable {name} is not set (use ${{{name}:-default}} for a default)"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitutes in every string value of a TOML document. Each changed
/// value is written back as a one-line basic string (escaped), followed by
/// as many newlines as the original value spanned, so every other line
/// keeps its number and later parse errors point at the right line.
///
/// # Errors
/// The text is not TOML; or a variable is unset without a default (named
/// with the key it is in, and its line).
pub(super) fn substitute_values(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Located> {
    let doc = toml_edit::Document::parse(text).map_err(|e| (None, format!("{e}")))?;
    let mut edits = Vec::new();
    walk_table(doc.as_table(), "", &lookup, &mut edits).map_err(|(at, message)| {
        let line = at.map(|at| text.get(..at).map_or(0, |t| t.matches('\n').count()) + 1);
        (line, message)
    })?;
    edits.sort_by_key(|(span, _)| span.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (span, value) in edits {
        let (Some(before), Some(original)) = (text.get(at..span.start), text.get(span.clone()))
        else {
            return Err((None, "cannot locate a value to substitute".into()));
        };
        out.push_str(before);
        out.push_str(&basic_string(&value));
        for _ in 0..original.matches('\n').count() {
            out.push('\n');
        }
        at = span.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    Ok(out)
}

/// A substituted value and where its literal is in the text.
type Edit = (std::ops::Range<usize>, String);

/// Why substitution failed, and where: a byte offset while walking, the
/// line once [`substitute_values`] returns it.
pub(super) type Located = (Option<usize>, String);

fn walk_table(
    t: &toml_edit::Table,
    path: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    edits: &mut Vec<Edit>,
) -> Result<(), Located> {
    for (k, item) in t.iter() {
        let key = if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        };
        walk_item(item, &key, lookup, edits)?;
    }
    Ok(())
}

fn walk_item(
    item: &toml_edit::Item,
    path: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    edits: &mut Vec<Edit>,
) -> Result<(), Located> {
    match item {
        toml_edit::Item::Value(v) => walk_value(v, path, lookup, edits),
        toml_edit::Item::Table(t) => walk_table(t, path, lookup, edits),
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                walk_table(t, &format!("{path}[{i}]"), lookup, edits)?;
            }
            Ok(())
        }
        toml_edit::Item::None => Ok(()),
    }
}

fn walk_value(
    v: &toml_edit::Value,
    path: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    edits: &mut Vec<Edit>,
) -> Result<(), Located> {
    match v {
        toml_edit::Value::String(s) if s.value().contains("${") => {
            let span = s
                .span()
                .ok_or_else(|| (None, format!("key `{path}`: cannot locate the value")))?;
            let replaced = substitute(s.value(), lookup).map_err(|e| {
                let why = e.trim_start_matches("line 1: ");
                (Some(span.start), format!("key `{path}`: {why}"))
            })?;
            edits.push((span, replaced));
            Ok(())
        }
        toml_edit::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk_value(x, &format!("{path}[{i}]"), lookup, edits)?;
            }
            Ok(())
        }
        toml_edit::Value::InlineTable(t) => {
            for (k, x) in t.iter() {
                walk_value(x, &format!("{path}.{k}"), lookup, edits)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `s` as a one-line TOML basic string.
fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_cannot_change_the_config_around_it() {
        let evil =
            |k: &str| (k == "KEY").then(|| "x\"\n[forward]\nlisten = \"0.0.0.0:1\"\n#".to_string());
        let out = substitute_values("shared_key = \"${KEY}\"\nport = 1\n", evil).unwrap();
        let t: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(t.len(), 2, "{out}");
        assert_eq!(
            t["shared_key"].as_str().unwrap(),
            "x\"\n[forward]\nlisten = \"0.0.0.0:1\"\n#"
        );
        // Comments are not substituted; unset variables name their key.
        assert!(substitute_values("# ${UNSET}\na = 1\n", evil).is_ok());
        let (line, e) = substitute_values("[s]\nb = \"${UNSET}\"\n", evil).unwrap_err();
        assert_eq!(line, Some(2), "{e}");
        assert!(e.contains("s.b") && e.contains("UNSET"), "{e}");
        // Lines stay where they were.
        let out = substitute_values("a = \"${KEY}\"\nb = 2\n", evil).unwrap();
        assert_eq!(out.lines().nth(1), Some("b = 2"));
    }

    fn env(k: &str) -> Option<String> {
        (k == "A").then(|| "1".to_string())
    }

    #[test]
    fn substitutes_and_defaults() {
        assert_eq!(substitute("x=${A} y=${B:-2}", env).unwrap(), "x=1 y=2");
        assert_eq!(substitute("p=$${A}", env).unwrap(), "p=${A}");
        let e = substitute("a\nb=${B}", env).unwrap_err();
        assert!(e.contains("line 2") && e.contains('B'), "{e}");
        assert!(substitute("${A", env).is_err());
    }
}
