//! The Helm chart (helm/weir): `helm lint --strict` and `helm template` with
//! default and full values, every rendered object validated against the
//! Kubernetes JSON schemas (kubernetes-validate, strict), and the pieces
//! checked to fit (tests/support/check_chart.py: selectors, ports, the
//! rendered weir.toml accepted by `weir check`, the dashboard copy).
//! `scripts/test` installs helm and kubernetes-validate.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(var: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/testinfra").join(default));
    assert!(
        p.exists(),
        "{} missing: run the suite with scripts/test, which installs it",
        p.display()
    );
    p
}

fn helm() -> PathBuf {
    tool("WEIR_TEST_HELM", "helm/helm")
}

fn python() -> PathBuf {
    tool("WEIR_TEST_PYTHON", "venv/bin/python")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chart() -> PathBuf {
    repo().join("helm/weir")
}

fn values_args(kind: &str) -> Vec<String> {
    match kind {
        "full" => vec![
            "-f".into(),
            chart().join("ci/full-values.yaml").display().to_string(),
        ],
        _ => vec![],
    }
}

fn render(kind: &str, dir: &Path) -> PathBuf {
    run(Command::new(helm())
        .args(["lint", "--strict"])
        .arg(chart())
        .args(values_args(kind)));
    let yaml = run(Command::new(helm())
        .args(["template", "weir"])
        .arg(chart())
        .args(values_args(kind)));
    let path = dir.join(format!("{kind}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn chart_renders_valid_kubernetes_objects_that_fit_together() {
    let dir = tempfile::tempdir().unwrap();
    let validate = python().with_file_name("kubernetes-validate");
    for kind in ["default", "full"] {
        let rendered = render(kind, dir.path());
        // The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one.
        for k8s in ["1.27.0", "1.33.0"] {
            let out = run(Command::new(&validate)
                .args(["--strict", "--quiet", "-k", k8s])
                .arg(&rendered));
            // Only the ServiceMonitor (a CRD) has no schema there; check_chart.py checks it.
            for line in out.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    line.contains("kind ServiceMonitor"),
                    "{kind} on {k8s}: {line}"
                );
            }
        }
        let out = run(Command::new(python())
            .arg(repo().join("tests/support/check_chart.py"))
            .arg(&rendered)
            .arg(kind)
            .arg(env!("CARGO_BIN_EXE_weir"))
            .arg(repo().join("dashboards/weir.json")));
        println!("{out}");
    }
}

#[test]
fn chart_refuses_bad_values_naming_the_key() {
    for (set, key) in [
        ("replicaCount=three", "/replicaCount"),
        ("config.wal.durability=sometimes", "/config/wal/durability"),
        ("replicacount=2", "replicacount"),
        ("config.sinks.lake.bucket=b", "/config/sinks/lake"),
    ] {
        let out = Command::new(helm())
            .args(["template", "weir", "--set", set])
            .arg(chart())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} accepted");
        assert!(stderr.contains(key), "{set}: {stderr}");
    }
}

#[test]
fn chart_and_image_follow_the_crate() {
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .unwrap()
        .trim_matches('"');
    let chart_yaml = std::fs::read_to_string(chart().join("Chart.yaml")).unwrap();
    assert!(
        chart_yaml.contains(&format!("appVersion: \"{version}\"")),
        "Chart.yaml appVersion must be {version}"
    );
    // The chart ships its own copy of the dashboard (charts cannot read
    // outside their folder); it must not drift.
    assert_eq!(
        std::fs::read(chart().join("dashboards/weir.json")).unwrap(),
        std::fs::read(repo().join("dashboards/weir.json")).unwrap(),
        "copy dashboards/weir.json to helm/weir/dashboards/"
    );
    // The Dockerfile's dependency-caching step stubs every declared bench,
    // or `cargo build` there fails on a missing target.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let stubs = dockerfile
        .lines()
        .find(|l| l.contains("for b in"))
        .expect("bench stub loop");
    let mut lines = cargo.lines();
    while let Some(l) = lines.next() {
        if l == "[[bench]]" {
            let name = lines
                .next()
                .unwrap()
                .trim_start_matches("name = ")
                .trim_matches('"');
            assert!(
                stubs
                    .split_whitespace()
                    .any(|w| w == name || w == format!("{name};")),
                "Dockerfile does not stub bench {name}"
            );
        }
    }
}
