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
        Some(v) => s.serialize_str(&crate::sink::redact_uri(v)),
        None => s.serialize_none(),
    }
}
