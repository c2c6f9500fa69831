//! The Grafana dashboard in dashboards/ is valid: JSON, a schema version
//! Grafana 10+ loads, unique panel ids, and a Prometheus query per target.
//! (That every metric it names exists is checked against a live /metrics in
//! tests/e2e/observability.rs.)

use std::collections::BTreeSet;

#[test]
fn dashboard_is_a_loadable_grafana_model() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/weir.json");
    let d: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let version = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&version), "schemaVersion {version}");
    assert!(d["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty() && u.len() <= 40));
    assert!(d["title"].is_string());
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 4);
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        assert!(p["type"].is_string() && p["title"].is_string());
        for k in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][k].is_u64(), "gridPos.{k}");
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty());
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert!(expr.contains("weir_"), "{expr}");
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{expr}"
            );
        }
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Events accepted",
        "Ack latency",
        "Backlog per sink",
        "Errors",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(want)),
            "no panel for {want}"
        );
    }
}
