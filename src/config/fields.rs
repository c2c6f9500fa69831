//! Serde helpers every stage's config uses: secrets printed as "***" by
//! `weir check` (they must never be logged), and `true` defaults.

/// Prints secrets as "***" in `weir check` (they must never be logged).
pub(crate) fn redact<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if v.is_empty() { "" } else { "***" })
}

pub(crate) fn redact_opt<S: serde::Serializer>(
    v: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => redact(v, s),
        None => s.serialize_none(),
    }
}

pub(crate) fn default_true() -> bool {
    true
}

/// Prints a URI with its password as "***" (`postgres://weir:***@pg/db`).
pub(crate) fn redact_url_password<S: serde::Serializer>(
    v: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&redact_uri(v)),
        None => s.serialize_none(),
    }
}

/// A URI with its password replaced by `***`, for logs and errors.
pub(crate) fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &uri[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &uri[..s + 3], &uri[at..]),
                None => uri.to_string(),
            }
        }
        _ => uri.to_string(),
    }
}

/// An error's first line (toml adds "in `key`" lines the key already says).
pub(crate) fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// serde_path_to_error's path as the config's keys are written
/// (`route[0].sinks`, `sinks.lake.allow_http`).
pub(crate) fn dotted(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}
