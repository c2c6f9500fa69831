//! Tag patterns with fluentd `<match>` semantics, and route lookup.
//!
//! `*` matches one tag part (no dots), `**` zero or more parts (`a.**` also
//! matches `a`), `{x,y}` alternatives; a route's `match` may list several
//! patterns separated by spaces. The first route that matches wins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::roll::config::ColumnType;

/// `[[route]]`: which events go where, with which columns.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name for logs, metrics and `unmatched`; default `route[N]`.
    pub(crate) name: Option<String>,
    /// fluentd `<match>` patterns, space separated (`app.**`, `*.access`, `{a,b}.x`).
    #[serde(rename = "match")]
    pub pattern: String,
    /// Key prefix after the sink's own prefix (e.g. a team folder).
    #[serde(default)]
    pub(crate) prefix: String,
    /// Sinks that receive this route's files; default all.
    #[serde(default)]
    pub(crate) sinks: Option<Vec<String>>,
    /// Typed columns taken out of the record.
    #[serde(default)]
    pub(crate) columns: BTreeMap<String, ColumnType>,
    /// One file per tag (default) or one per route with the tag as a column.
    #[serde(default)]
    pub(crate) files: FileGrouping,
    /// The route's table in Iceberg sinks; default: the route's name.
    pub(crate) table: Option<String>,
}

/// What one Parquet file of a route holds (per period and node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileGrouping {
    /// One file per tag: `{prefix}/{tag}/dt=…/hour=…/{node}.parquet`.
    #[default]
    PerTag,
    /// One file for all the route's tags, named by the route:
    /// `{prefix}/{route}/dt=…/hour=…/{node}.parquet`; the `tag` column
    /// tells them apart. For tags made per container or per pod.
    PerRoute,
}

/// What happens to an event whose tag matches no route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Unmatched {
    /// Counted in `weir_roll_unrouted_events_total` and dropped.
    Drop,
    /// Sent to the route with this name.
    Route(String),
}

impl<'de> Deserialize<'de> for Unmatched {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(if s == "drop" {
            Unmatched::Drop
        } else {
            Unmatched::Route(s)
        })
    }
}

/// A route after validation.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// The route's name (`route[N]` unless configured).
    pub(crate) name: String,
    /// Key prefix after the sink's prefix.
    pub(crate) prefix: String,
    pub pattern: String,
    #[serde(skip)]
    pub(crate) patterns: Vec<TagPattern>,
    pub(crate) sinks: Vec<String>,
    pub(crate) columns: Vec<(String, ColumnType)>,
    pub(crate) files: FileGrouping,
    /// The route's table in Iceberg sinks.
    pub(crate) table: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(u8),
    /// `*`: any run of non-dot bytes.
    Star,
    /// `**` in the middle of a part: anything.
    Any,
    /// `.**`: nothing, or a dot followed by anything.
    DotAny,
    /// `**.`: nothing, or anything ending in a dot.
    AnyDot,
}

/// One compiled pattern (alternatives already expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TagPattern {
    alternatives: Vec<Vec<Tok>>,
}

/// Most concrete patterns one `{…}` pattern may expand to.
const MAX_EXPANSION: usize = 256;

fn expand_braces(p: &str) -> Result<Vec<String>, String> {
    let Some(open) = p.find('{') else {
        if p.contains('}') {
            return Err(format!("unbalanced '}}' in pattern {p:?}"));
        }
        return Ok(vec![p.to_string()]);
    };
    // Find the matching close brace, splitting on top-level commas.
    let mut depth = 0;
    let mut parts = Vec::new();
    let mut start = open + 1;
    let mut close = None;
    for (i, c) in p.char_indices().skip_while(|(i, _)| *i <= open) {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                parts.push(&p[start..i]);
                close = Some(i);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&p[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(|| format!("unclosed '{{' in pattern {p:?}"))?;
    let mut out = Vec::new();
    for part in parts {
        let joined = format!("{}{}{}", &p[..open], part, &p[close + 1..]);
        for e in expand_braces(&joined)? {
            out.push(e);
            if out.len() > MAX_EXPANSION {
                return Err(format!(
                    "pattern {p:?} expands to more than {MAX_EXPANSION} patterns"
                ));
            }
        }
    }
    Ok(out)
}

fn compile(p: &str) -> Vec<Tok> {
    let b = p.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' && b[i + 1..].starts_with(b"**") {
            toks.push(Tok::DotAny);
            i += 3;
        } else if b[i..].starts_with(b"**") {
            let at_part_start = i == 0 || b[i - 1] == b'.';
            if at_part_start && b.get(i + 2) == Some(&b'.') {
                toks.push(Tok::AnyDot);
                i += 3;
            } else {
                toks.push(Tok::Any);
                i += 2;
            }
        } else if b[i] == b'*' {
            toks.push(Tok::Star);
            i += 1;
        } else {
            toks.push(Tok::Lit(b[i]));
            i += 1;
        }
    }
    toks
}

fn matches(p: &[Tok], t: &[u8]) -> bool {
    let Some((first, rest)) = p.split_first() else {
        return t.is_empty();
    };
    match first {
        Tok::Lit(c) => t.first() == Some(c) && matches(rest, &t[1..]),
        Tok::Star => {
            let run = t.iter().position(|&c| c == b'.').unwrap_or(t.len());
            (0..=run).any(|k| matches(rest, &t[k..]))
        }
        Tok::Any => (0..=t.len()).any(|k| matches(rest, &t[k..])),
        Tok::DotAny => {
            matches(rest, t)
                || (t.first() == Some(&b'.') && (1..=t.len()).any(|k| matches(rest, &t[k..])))
        }
        Tok::AnyDot => {
            matches(rest, t) || (1..=t.len()).any(|k| t[k - 1] == b'.' && matches(rest, &t[k..]))
        }
    }
}

impl TagPattern {
    /// Parses one pattern (no spaces).
    pub(crate) fn parse(p: &str) -> Result<Self, String> {
        if p.is_empty() {
            return Err("empty pattern".into());
        }
        Ok(Self {
            alternatives: expand_braces(p)?.iter().map(|s| compile(s)).collect(),
        })
    }

    /// Parses a space-separated list of patterns.
    pub(crate) fn parse_list(s: &str) -> Result<Vec<Self>, String> {
        let list: Vec<_> = s
            .split_whitespace()
            .map(Self::parse)
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err("needs at least one pattern, e.g. \"app.**\"".into());
        }
        Ok(list)
    }

    pub(crate) fn matches(&self, tag: &[u8]) -> bool {
        self.alternatives.iter().any(|a| matches(a, tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        TagPattern::parse_list(p)
            .unwrap()
            .iter()
            .any(|x| x.matches(t.as_bytes()))
    }

    #[test]
    fn fluentd_semantics() {
        assert!(m("a.*", "a.b"));
        assert!(!m("a.*", "a"));
        assert!(!m("a.*", "a.b.c"));
        assert!(m("a.**", "a"));
        assert!(m("a.**", "a.b.c"));
        assert!(!m("a.**", "ab"));
        assert!(m("**", "anything.at.all"));
        assert!(m("**.log", "log"));
        assert!(m("**.log", "x.y.log"));
        assert!(!m("**.log", "xlog"));
        assert!(m("{app,web}.**", "web.x"));
        assert!(!m("{app,web}.**", "dev.x"));
        assert!(m("a.{b,c.d}", "a.c.d"));
        assert!(m("dev.** team.*", "team.x"));
        assert!(m("*.access", "nginx.access"));
        assert!(!m("*.access", "a.b.access"));
    }

    #[test]
    fn bad_patterns() {
        assert!(TagPattern::parse_list("  ").is_err());
        assert!(TagPattern::parse_list("a.{b").is_err());
        assert!(TagPattern::parse_list("a}").is_err());
    }
}
