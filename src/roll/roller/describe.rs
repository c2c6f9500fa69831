//! What a closed output (or an open file's preview) is, as its manifest
//! says: pure functions from the output (its key, why it closed, its WAL
//! coverage, what it holds) and the config to the [`Manifest`] the outbox
//! keeps, with the object key every sink gives it. No I/O, no roller state.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::output::{FileSlot, OutputKey, Why};
use crate::config::Config;
use crate::outbox::{hex, FileKind, Manifest, PreviewSlot, Slot as ManifestSlot, VERSION};
use crate::sink::RecordSink;
use crate::sink::{FileName, FileParts, PreviewOf};

/// A closed output.
pub(super) struct Closed<'a> {
    pub(crate) key: &'a OutputKey,
    pub(crate) why: Why,
    /// Its outbox id.
    pub(crate) id: String,
    pub(crate) first_seq: u64,
    pub(crate) period_start: i64,
    /// It holds every event of its key through this WAL sequence.
    pub(crate) covered_through: u64,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) finished_at_ms: i64,
}

/// What names outputs: the config, its record sinks (indexed as in
/// [`OutputKey::Records`]) and the period length.
pub(super) struct Naming<'a> {
    pub(crate) config: &'a Config,
    /// This start's random id, which record sinks' keys carry.
    pub(crate) run_id: &'a str,
    pub(crate) record_sinks: &'a [Arc<dyn RecordSink>],
    pub(crate) period_secs: u64,
}

/// The manifest of `c`, and its `kind` label in
/// `weir_roll_files_finished_total`.
pub(super) fn manifest(c: &Closed<'_>, n: &Naming<'_>) -> (Manifest, &'static str) {
    let node = n.config.node_id.as_str();
    let mut keys = BTreeMap::new();
    let (kind, route, group, period_start, slot, label, part_extension) = match c.key {
        OutputKey::File { route, group, slot } => {
            let (name, mslot, label) = match (slot, c.why) {
                (FileSlot::Period(_), Why::Deadline) => {
                    (FileName::Main, ManifestSlot::Main, "period")
                }
                (FileSlot::Period(_), _) => {
                    (FileName::Part(c.first_seq), ManifestSlot::Part, "part")
                }
                (FileSlot::Late(_), _) => (FileName::Late(c.first_seq), ManifestSlot::Late, "late"),
                (FileSlot::Outside, _) => (
                    FileName::Outside(c.first_seq),
                    ManifestSlot::Outside,
                    "outside",
                ),
            };
            let route_cfg = &n.config.routes[*route];
            let parts = FileParts {
                group,
                period_start: c.period_start,
                period_secs: n.period_secs,
                node,
                name,
            };
            for sink in &route_cfg.sinks {
                let Some(cfg) = n.config.sinks.get(sink) else {
                    continue;
                };
                if cfg.capabilities().records {
                    continue;
                }
                if let Some(key) = cfg.file_key(route_cfg, &parts) {
                    keys.insert(sink.clone(), key);
                }
            }
            (
                FileKind::Parquet,
                route_cfg.name.clone(),
                group.to_vec(),
                c.period_start,
                mslot,
                label,
                None,
            )
        }
        OutputKey::Records { sink, group } => {
            let sink = &n.record_sinks[*sink];
            keys.insert(
                sink.name().to_string(),
                sink.part_key(node, n.run_id, group, c.first_seq, c.rows),
            );
            let route = n
                .config
                .routes
                .iter()
                .find(|r| r.sinks.iter().any(|s| s == sink.name()))
                .map(|r| r.name.clone())
                .unwrap_or_default();
            (
                FileKind::Records,
                route,
                group.as_bytes().to_vec(),
                0,
                ManifestSlot::Records,
                sink.part_label(),
                Some(sink.extension().to_string()),
            )
        }
    };
    let manifest = Manifest {
        version: VERSION,
        id: c.id.clone(),
        kind,
        route,
        group_hex: hex(&group),
        group: String::from_utf8_lossy(&group).into_owned(),
        period_start,
        period_secs: n.period_secs,
        slot,
        late_seq: None,
        first_seq: c.first_seq,
        covered_through: c.covered_through,
        rows: c.rows,
        bytes: c.bytes,
        keys,
        finished_at_ms: c.finished_at_ms,
        node: node.to_string(),
        preview_of: None,
        part_extension,
    };
    (manifest, label)
}

/// A preview of an open file: the rows it got from WAL record `from`
/// through `through`.
pub(super) struct Preview<'a> {
    pub(crate) route: usize,
    pub(crate) group: &'a [u8],
    pub(crate) slot: FileSlot,
    /// The open file's first record (names which file it previews).
    pub(crate) opened: u64,
    pub(crate) period_start: i64,
    pub from: u64,
    pub(crate) through: u64,
    pub(crate) id: String,
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
    pub(crate) finished_at_ms: i64,
}

/// The manifest of a preview, keyed for the route's sinks that take
/// previews (`fresh`).
pub(super) fn preview_manifest(p: &Preview<'_>, fresh: &[String], n: &Naming<'_>) -> Manifest {
    let (of, preview_slot) = match p.slot {
        FileSlot::Period(_) => (PreviewOf::Period(p.opened), PreviewSlot::Period),
        FileSlot::Late(_) => (PreviewOf::Late(p.opened), PreviewSlot::Late),
        FileSlot::Outside => (PreviewOf::Outside(p.opened), PreviewSlot::Outside),
    };
    let node = n.config.node_id.as_str();
    let route_cfg = &n.config.routes[p.route];
    let parts = FileParts {
        group: p.group,
        period_start: p.period_start,
        period_secs: n.period_secs,
        node,
        name: FileName::Preview { of, seq: p.from },
    };
    let keys = fresh
        .iter()
        .filter_map(|sink| {
            let key = n.config.sinks.get(sink)?.file_key(route_cfg, &parts)?;
            Some((sink.clone(), key))
        })
        .collect();
    Manifest {
        version: VERSION,
        id: p.id.clone(),
        kind: FileKind::Parquet,
        route: route_cfg.name.clone(),
        group_hex: hex(p.group),
        group: String::from_utf8_lossy(p.group).into_owned(),
        period_start: p.period_start,
        period_secs: n.period_secs,
        slot: ManifestSlot::Preview,
        late_seq: None,
        first_seq: p.from,
        covered_through: p.through,
        rows: p.rows,
        bytes: p.bytes,
        keys,
        finished_at_ms: p.finished_at_ms,
        node: node.to_string(),
        preview_of: Some((preview_slot, p.opened)),
        part_extension: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_str(
            r#"node_id = "n1"
data_dir = "/tmp/x"
[roll]
period = "1h"
[[route]]
name = "web"
match = "app.**"
sinks = ["lake", "td", "fwd"]
[sinks.lake]
type = "local"
path = "/tmp/lake"
[sinks.td]
type = "td"
apikey = "k"
[sinks.fwd]
type = "forward"
servers = [{ address = "127.0.0.1:24224" }]
"#,
            "test",
        )
        .unwrap()
    }

    fn closed(key: &OutputKey, why: Why) -> Closed<'_> {
        Closed {
            key,
            why,
            id: "00000000000000000007-0123456789abcdef".into(),
            first_seq: 7,
            period_start: 1_700_000_000 / 3600 * 3600,
            covered_through: 9,
            rows: 3,
            bytes: 100,
            finished_at_ms: 1_700_000_100_000,
        }
    }

    #[test]
    fn a_period_file_goes_to_the_file_sinks_only() {
        let cfg = config();
        let sinks = crate::sink::record_sinks(&cfg.sinks);
        let n = Naming {
            config: &cfg,
            run_id: "0123456789abcdef0123456789abcdef",
            record_sinks: &sinks,
            period_secs: 3600,
        };
        let key = OutputKey::File {
            route: 0,
            group: b"app.web".to_vec().into(),
            slot: FileSlot::Period(1_699_999_200),
        };
        let (m, label) = manifest(&closed(&key, Why::Deadline), &n);
        assert_eq!(label, "period");
        assert_eq!((m.kind, m.slot), (FileKind::Parquet, ManifestSlot::Main));
        assert_eq!(m.keys.keys().collect::<Vec<_>>(), vec!["lake"]);
        assert!(
            m.keys["lake"].ends_with("/n1.parquet"),
            "{}",
            m.keys["lake"]
        );
        assert_eq!((m.group.as_str(), m.route.as_str()), ("app.web", "web"));
        assert_eq!((m.first_seq, m.covered_through, m.rows), (7, 9, 3));
        let (m, label) = manifest(&closed(&key, Why::Early("memory")), &n);
        assert_eq!((label, m.slot), ("part", ManifestSlot::Part));
        assert!(m.keys["lake"].contains("part-"), "{}", m.keys["lake"]);
    }

    #[test]
    fn late_and_outside_files_are_named_by_their_first_record() {
        let cfg = config();
        let sinks = crate::sink::record_sinks(&cfg.sinks);
        let n = Naming {
            config: &cfg,
            run_id: "0123456789abcdef0123456789abcdef",
            record_sinks: &sinks,
            period_secs: 3600,
        };
        for (slot, label, mslot) in [
            (FileSlot::Late(1_699_999_200), "late", ManifestSlot::Late),
            (FileSlot::Outside, "outside", ManifestSlot::Outside),
        ] {
            let key = OutputKey::File {
                route: 0,
                group: b"app.web".to_vec().into(),
                slot,
            };
            let (m, l) = manifest(&closed(&key, Why::Deadline), &n);
            assert_eq!((l, m.slot), (label, mslot));
            assert!(
                m.keys["lake"].contains(&format!("{label}-")),
                "{}",
                m.keys["lake"]
            );
        }
    }

    #[test]
    fn a_record_sinks_part_carries_its_key_and_extension() {
        let cfg = config();
        let sinks = crate::sink::record_sinks(&cfg.sinks);
        let n = Naming {
            config: &cfg,
            run_id: "0123456789abcdef0123456789abcdef",
            record_sinks: &sinks,
            period_secs: 3600,
        };
        for (i, sink) in sinks.iter().enumerate() {
            let key = OutputKey::Records {
                sink: i,
                group: sink.group(b"app.web"),
            };
            let (m, label) = manifest(&closed(&key, Why::Full), &n);
            assert_eq!(label, sink.part_label());
            assert_eq!((m.kind, m.slot), (FileKind::Records, ManifestSlot::Records));
            assert_eq!(m.extension(), sink.extension());
            assert_eq!(m.route, "web");
            assert_eq!(m.period_start, 0, "a part has no period");
            assert_eq!(
                m.keys[sink.name()],
                sink.part_key(
                    "n1",
                    "0123456789abcdef0123456789abcdef",
                    &sink.group(b"app.web"),
                    7,
                    3
                )
            );
        }
    }

    #[test]
    fn a_preview_goes_to_the_fresh_sinks_under_fresh() {
        let cfg = config();
        let sinks = crate::sink::record_sinks(&cfg.sinks);
        let n = Naming {
            config: &cfg,
            run_id: "0123456789abcdef0123456789abcdef",
            record_sinks: &sinks,
            period_secs: 3600,
        };
        let p = Preview {
            route: 0,
            group: b"app.web",
            slot: FileSlot::Period(1_699_999_200),
            opened: 4,
            period_start: 1_699_999_200,
            from: 7,
            through: 9,
            id: "x-preview".into(),
            rows: 2,
            bytes: 10,
            finished_at_ms: 0,
        };
        let m = preview_manifest(&p, &["lake".to_string()], &n);
        assert_eq!(m.slot, ManifestSlot::Preview);
        assert_eq!(m.preview_of, Some((PreviewSlot::Period, 4)));
        assert_eq!((m.first_seq, m.covered_through), (7, 9));
        assert!(m.keys["lake"].contains("_fresh/"), "{}", m.keys["lake"]);
        assert!(preview_manifest(&p, &[], &n).keys.is_empty());
    }
}
