//! Deterministic object keys (invariants 3 and 7).
//!
//! `{prefix}/{group}/dt=YYYY-MM-DD/hour=HH[/minute=MM]/{node}[.{kind}-{seq}].parquet`
//!
//! `group` is the tag, or the route's name for a route with
//! `files = "per_route"`. With `layout = "hive"` the group folder is a Hive
//! partition too (`tag={tag}`, `route={route}`), so Spark, Hive and Athena
//! read a sink's root as one table; in an Iceberg table's data folder a
//! per-tag file sits under `tag={tag}` and a per-route file under no group
//! folder at all (the table is the route). The key depends only on what names the file
//! (prefix, group, period, node, kind and WAL sequence), never on the clock
//! or randomness, so an upload retried after a crash writes the same key.
//! Tags become exactly one path segment:
//! bytes outside `[A-Za-z0-9._-]`, `%` included, are written `%XX`, and a
//! leading `.` or `_` too, so no tag can form `..`, a `/` or an absolute
//! path, hide from Hive-style readers (which skip `_` and `.` folders) or
//! pose as the previews' `_fresh` folder.

use chrono::{DateTime, Timelike};

use crate::sink::stores::Layout;

/// Longest escaped segment kept whole; file systems (and the local sink)
/// refuse names over 255 bytes.
const MAX_SEGMENT: usize = 200;

/// Escapes one key segment (a tag or node id). Different inputs give
/// different segments: a segment that would be longer than 200 bytes keeps
/// its first 150 and ends in `~` and 32 hex digits of the raw bytes' SHA-256
/// (`~` never appears otherwise).
pub(crate) fn escape_segment(raw: &[u8]) -> String {
    let out = escape_whole(raw);
    if out.len() <= MAX_SEGMENT {
        return out;
    }
    let mut cut = 150;
    // Never split a `%XX` (the escaped text is ASCII, so any cut is a
    // char boundary).
    if let Some(p) = out[..cut].rfind('%') {
        if p + 3 > cut {
            cut = p;
        }
    }
    format!(
        "{}~{}",
        &out[..cut],
        crate::ids::stable_hex(&[b"segment", raw], 16)
    )
}

fn escape_whole(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'-' || ((b == b'.' || b == b'_') && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        // An empty tag never reaches here (the decoder drops it); keep the
        // segment non-empty regardless.
        out.push_str("%00");
    }
    out
}

/// Checks a configured key prefix: `/`-separated plain segments.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    for seg in prefix.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg != FRESH_DIR
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-=".contains(&b));
        if !ok {
            return Err(format!(
                "{prefix:?}: segments must be non-empty [A-Za-z0-9._=-], not '.', '..' or '_fresh' (the previews' folder), with no leading or doubled '/'"
            ));
        }
    }
    Ok(())
}

/// Which of a period's files a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileName {
    /// `{node}.parquet`: the period's one file, finished at its deadline.
    Main,
    /// `{node}.part-{seq}.parquet`: the period's file finished before its
    /// deadline (open-file or memory bound, drain); `seq` is its first WAL
    /// sequence.
    Part(u64),
    /// `{node}.late-{seq}.parquet`: events that arrived after the period's
    /// file was finished.
    Late(u64),
    /// `{node}.outside-{seq}.parquet`: events dated outside the accepted
    /// window, filed under the period they arrived in.
    Outside(u64),
    /// `{node}.{of}.f-{seq}.parquet` under `_fresh/`: a preview of a file
    /// still open (`roll.freshness`), holding its rows from WAL sequence
    /// `seq` on. `of` names the file it previews as it would be if
    /// finished early (`part-{first seq}`, `late-…`, `outside-…`), so a
    /// reader can tell which finished file replaces it.
    Preview { of: PreviewOf, seq: u64 },
}

/// The file a preview belongs to, by the WAL sequence it opened at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreviewOf {
    /// A period's file: finished as `{node}.parquet` or `{node}.part-{seq}.parquet`.
    Period(u64),
    Late(u64),
    Outside(u64),
}

/// The folder under a sink's prefix that holds previews.
pub(crate) const FRESH_DIR: &str = "_fresh";

/// Where the group goes in a key: the sink's layout, or an Iceberg table's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupIn {
    /// A file sink's layout; `per_route` names the group `route=` in Hive.
    Layout { layout: Layout, per_route: bool },
    /// An Iceberg table's data folder: `tag={tag}/` for a per-tag file,
    /// nothing for a per-route one.
    Table { per_route: bool },
}

/// What names one finished file, whatever sink it goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileParts<'a> {
    /// The tag, or the route name of a per-route file.
    pub(crate) group: &'a [u8],
    /// Period start, seconds since the epoch (UTC).
    pub(crate) period_start: i64,
    pub(crate) period_secs: u64,
    pub(crate) node: &'a str,
    pub(crate) name: FileName,
}

impl FileName {
    /// The name of a finished file of this manifest slot, whose first WAL
    /// sequence is `first_seq`; `None` for a Treasure Data part.
    pub(crate) fn for_slot(slot: crate::outbox::manifest::Slot, first_seq: u64) -> Option<Self> {
        use crate::outbox::manifest::Slot;
        match slot {
            Slot::Main => Some(FileName::Main),
            Slot::Part => Some(FileName::Part(first_seq)),
            Slot::Late => Some(FileName::Late(first_seq)),
            Slot::Outside => Some(FileName::Outside(first_seq)),
            Slot::Records | Slot::Preview => None,
        }
    }
}

/// The key one file sink gives a file of `route`: the sink's prefix, the
/// route's, then [`object_key`] in the sink's `layout`.
pub(crate) fn sink_key(
    sink_prefix: &str,
    layout: Layout,
    route: &crate::router::Route,
    parts: &FileParts<'_>,
) -> String {
    let prefix = match parts.name {
        FileName::Preview { .. } => {
            join_prefix(sink_prefix, &join_prefix(FRESH_DIR, &route.prefix))
        }
        _ => join_prefix(sink_prefix, &route.prefix),
    };
    let group_in = GroupIn::Layout {
        layout,
        per_route: route.files == crate::router::FileGrouping::PerRoute,
    };
    object_key(&prefix, group_in, parts)
}

/// Builds the object key: `prefix`, the group as `group_in` says, the
/// period's folders, the file's name.
pub(crate) fn object_key(prefix: &str, group_in: GroupIn, p: &FileParts<'_>) -> String {
    let t = DateTime::from_timestamp(p.period_start, 0).unwrap_or_default();
    let mut key = String::new();
    if !prefix.is_empty() {
        key.push_str(prefix);
        key.push('/');
    }
    match group_in {
        GroupIn::Layout {
            layout: Layout::Folders,
            ..
        } => {
            key.push_str(&escape_segment(p.group));
            key.push('/');
        }
        GroupIn::Layout {
            layout: Layout::Hive,
            per_route,
        } => {
            key.push_str(if per_route { "route=" } else { "tag=" });
            key.push_str(&escape_segment(p.group));
            key.push('/');
        }
        GroupIn::Table { per_route: false } => {
            key.push_str("tag=");
            key.push_str(&escape_segment(p.group));
            key.push('/');
        }
        GroupIn::Table { per_route: true } => {}
    }
    key.push_str(&format!("dt={}/hour={:02}", t.format("%Y-%m-%d"), t.hour()));
    if p.period_secs < 3600 {
        key.push_str(&format!("/minute={:02}", t.minute()));
    }
    key.push('/');
    key.push_str(&escape_segment(p.node.as_bytes()));
    match p.name {
        FileName::Main => {}
        FileName::Part(seq) => key.push_str(&format!(".part-{seq}")),
        FileName::Late(seq) => key.push_str(&format!(".late-{seq}")),
        FileName::Outside(seq) => key.push_str(&format!(".outside-{seq}")),
        FileName::Preview { of, seq } => {
            let (kind, first) = match of {
                PreviewOf::Period(s) => ("part", s),
                PreviewOf::Late(s) => ("late", s),
                PreviewOf::Outside(s) => ("outside", s),
            };
            key.push_str(&format!(".{kind}-{first}.f-{seq}"));
        }
    }
    key.push_str(".parquet");
    key
}

/// Joins a sink's prefix and a route's prefix into one key prefix.
pub(crate) fn join_prefix(sink: &str, route: &str) -> String {
    match (sink.is_empty(), route.is_empty()) {
        (true, _) => route.to_string(),
        (_, true) => sink.to_string(),
        _ => format!("{sink}/{route}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: &[u8], period_secs: u64, name: FileName) -> String {
        let folders = GroupIn::Layout {
            layout: Layout::Folders,
            per_route: false,
        };
        object_key(
            "logs",
            folders,
            &FileParts {
                group: tag,
                period_start: 1_764_090_000, // 2025-11-25T17:00:00Z
                period_secs,
                node: "n1",
                name,
            },
        )
    }

    #[test]
    fn layout() {
        assert_eq!(
            key(b"app.web", 3600, FileName::Main),
            "logs/app.web/dt=2025-11-25/hour=17/n1.parquet"
        );
        assert_eq!(
            key(b"app.web", 60, FileName::Late(42)),
            "logs/app.web/dt=2025-11-25/hour=17/minute=00/n1.late-42.parquet"
        );
        assert_eq!(
            key(b"app.web", 3600, FileName::Part(7)),
            "logs/app.web/dt=2025-11-25/hour=17/n1.part-7.parquet"
        );
        assert_eq!(
            key(
                b"app.web",
                3600,
                FileName::Preview {
                    of: PreviewOf::Period(7),
                    seq: 12
                }
            ),
            "logs/app.web/dt=2025-11-25/hour=17/n1.part-7.f-12.parquet"
        );
        assert_eq!(
            key(b"k8s", 3600, FileName::Outside(9)),
            "logs/k8s/dt=2025-11-25/hour=17/n1.outside-9.parquet"
        );
    }

    #[test]
    fn hive_and_table_layouts() {
        let at = |group_in| {
            object_key(
                "p",
                group_in,
                &FileParts {
                    group: b"app.web",
                    period_start: 1_764_090_000,
                    period_secs: 3600,
                    node: "n1",
                    name: FileName::Late(3),
                },
            )
        };
        let hive = |per_route| GroupIn::Layout {
            layout: Layout::Hive,
            per_route,
        };
        assert_eq!(
            at(hive(false)),
            "p/tag=app.web/dt=2025-11-25/hour=17/n1.late-3.parquet"
        );
        assert_eq!(
            at(hive(true)),
            "p/route=app.web/dt=2025-11-25/hour=17/n1.late-3.parquet"
        );
        assert_eq!(
            at(GroupIn::Table { per_route: false }),
            "p/tag=app.web/dt=2025-11-25/hour=17/n1.late-3.parquet"
        );
        assert_eq!(
            at(GroupIn::Table { per_route: true }),
            "p/dt=2025-11-25/hour=17/n1.late-3.parquet"
        );
    }

    #[test]
    fn hostile_tags_stay_one_segment() {
        for tag in [
            &b".."[..],
            b"../../etc",
            b"/abs",
            b"a/b",
            b".",
            b"%2F",
            b"a\0b",
            b"\xff",
        ] {
            let seg = escape_segment(tag);
            assert!(!seg.contains('/'), "{seg}");
            assert_ne!(seg, "..");
            assert_ne!(seg, ".");
            assert!(!seg.starts_with('.'), "{seg}");
            assert!(seg.bytes().all(|b| b.is_ascii_graphic()), "{seg}");
        }
        assert_ne!(escape_segment(b"%2F"), escape_segment(b"/"));
        assert_eq!(escape_segment(b"../x"), "%2E.%2Fx");
        assert_eq!(escape_segment(b"_fresh"), "%5Ffresh");
        assert_eq!(escape_segment(b"a_b"), "a_b");
    }

    #[test]
    fn long_tags_become_bounded_distinct_segments() {
        let a = escape_segment(&[b'a'; 1024]);
        let b = escape_segment(&[b'a'; 1023]);
        assert!(a.len() <= MAX_SEGMENT && b.len() <= MAX_SEGMENT, "{a}");
        assert_ne!(a, b);
        let pct = escape_segment(&[b'/'; 300]);
        assert!(pct.len() <= MAX_SEGMENT, "{pct}");
        let head = pct.split('~').next().unwrap();
        assert!(
            head.len().is_multiple_of(3) && head.split('%').skip(1).all(|x| x == "2F"),
            "{pct}"
        );
        assert_eq!(escape_segment(b"app.web"), "app.web");
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("dwh/raw").is_ok());
        assert!(validate_prefix("../x").is_err());
        assert!(validate_prefix("/abs").is_err());
        assert!(validate_prefix("a//b").is_err());
    }
}
