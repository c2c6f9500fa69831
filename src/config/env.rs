//! `${NAME}` and `${NAME:-default}` substitution in config text, so secrets
//! and per-pod values (the host name) come from the environment.

/// Replaces every `${NAME}` with `lookup(NAME)`; `$${` stays a literal `${`.
///
/// # Errors
/// Names the variable and the line when it is unset and has no default, or
/// when a `${` is not closed.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
