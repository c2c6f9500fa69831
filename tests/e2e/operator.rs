//! An operator's first week: every documented series there from the start
//! (alerts need no `or vector(0)`), nothing dropped in silence (unmatched
//! tags, values of the wrong type), what `weir check` warns about.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// The metric names of the README's table.
fn documented() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("weir_"))
        .map(str::to_string)
        .collect()
}

/// The metric names the README's alert rules use.
fn alerted() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("<!-- alerts -->").expect("alerts block");
    let end = readme.find("<!-- end of alerts -->").expect("alerts end");
    readme[start..end]
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("weir_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_fresh_node_has_every_documented_series_and_the_alerts_work() {
    let lake = tempfile::tempdir().unwrap();
    // A forward sink too, whose per-server series exist from the start.
    let weir = Weir::start(&format!(
        "[sinks.lake]\ntype = \"iceberg\"\nwarehouse = \"{}\"\n\
         [sinks.out]\ntype = \"forward\"\nservers = [{{ address = \"127.0.0.1:9\" }}]\n\
         [[route]]\nname = \"relay\"\nmatch = \"relay.**\"\nsinks = [\"out\"]\n\
         [[route]]\nname = \"app\"\nmatch = \"**\"\nsinks = [\"local\", \"lake\"]\ncolumns = {{ status = \"int32\" }}\n",
        lake.path().join("wh").display()
    ));
    let samples = scrape(weir.metrics_port);
    let names: BTreeSet<String> = samples
        .iter()
        .map(|s| {
            s.name
                .trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum")
                .to_string()
        })
        .collect();
    // prometheus_client's parser drops a counter's `_total`; accept both.
    let has = |n: &str| names.contains(n) || names.contains(n.trim_end_matches("_total"));
    let missing: Vec<String> = documented().into_iter().filter(|n| !has(n)).collect();
    assert!(missing.is_empty(), "absent on a fresh node: {missing:?}");
    let missing: Vec<String> = alerted().into_iter().filter(|n| !has(n)).collect();
    assert!(missing.is_empty(), "alerts use absent series: {missing:?}");
    for n in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(has(n), "{n} missing");
    }
    assert!(metric(&samples, "process_resident_memory_bytes", &[]) > 1e6);
    assert_eq!(
        metric(
            &samples,
            "weir_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // Labelled series at zero for the labels the config knows.
    for (name, labels) in [
        (
            "weir_sink_uploads_total",
            vec![("sink", "local"), ("result", "error")],
        ),
        (
            "weir_iceberg_commits_total",
            vec![("sink", "lake"), ("result", "ok")],
        ),
        (
            "weir_roll_type_mismatches_total",
            vec![("route", "app"), ("column", "status")],
        ),
        (
            "weir_forward_connections_closed_total",
            vec![("reason", "malformed")],
        ),
        (
            "weir_forward_out_chunks_total",
            vec![
                ("sink", "out"),
                ("server", "127.0.0.1:9"),
                ("result", "failed"),
            ],
        ),
    ] {
        assert!(
            samples
                .iter()
                .any(|s| s.name.starts_with(name.trim_end_matches("_total"))
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))),
            "{name}{labels:?} absent"
        );
    }
}

/// Tags no route takes are logged the first time each is seen (not per
/// event), counted exactly, and `weir check` warns when routes exist and
/// `unmatched` was left to its default; said explicitly, no warning.
#[test]
fn unmatched_tags_are_reported_not_dropped_in_silence() {
    let weir = Weir::start("[[route]]\nname = \"app\"\nmatch = \"app.**\"\n");
    let mut s = connect(weir.port).unwrap();
    let mut n = 0;
    for (i, tag) in ["typo.web", "typo.web", "other.api", "app.ok"]
        .iter()
        .enumerate()
    {
        let ev: Vec<(i64, String)> = (0..25).map(|k| (now_secs(), format!("{i}-{k}"))).collect();
        let chunk = format!("u{i}");
        send_acked(&mut s, &forward_request(tag, &ev, Some(&chunk), 0), &chunk).unwrap();
        if !tag.starts_with("app.") {
            n += ev.len();
        }
    }
    let counted = wait_until(Duration::from_secs(30), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_roll_unrouted_events_total",
            &[],
        ) == n as f64
    });
    assert!(counted, "{}", weir.log());
    let log = weir.log();
    let lines = |tag: &str| {
        log.lines()
            .filter(|l| l.contains("matches no route") && l.contains(&format!("tag=\"{tag}\"")))
            .count()
    };
    assert_eq!(lines("typo.web"), 1, "{log}");
    assert_eq!(lines("other.api"), 1, "{log}");
    assert_eq!(lines("app.ok"), 0);
    let check = |cfg: &std::path::Path| {
        let out = run_ok(
            Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(["check", "-c"])
                .arg(cfg),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = check(&weir.config_path);
    assert!(out.contains("# warning: unmatched:"), "{out}");
    let cfg = std::fs::read_to_string(&weir.config_path).unwrap();
    let explicit = weir.dir.path().join("explicit.toml");
    std::fs::write(&explicit, format!("unmatched = \"drop\"\n{cfg}")).unwrap();
    assert!(
        !check(&explicit).contains("# warning"),
        "{}",
        check(&explicit)
    );
}

/// A declared column fed values of another type: null in the column, kept
/// in `record`, counted per route and column, and a warning names the
/// column, the declared type and the type seen.
#[test]
fn values_of_the_wrong_type_are_counted_and_named() {
    let mut weir = Weir::create_full(
        "",
        "",
        "[[route]]\nname = \"web\"\nmatch = \"**\"\ncolumns = { status = \"int32\", path = \"string\" }\n",
    );
    weir.spawn();
    let mut s = connect(weir.port).unwrap();
    let mut b = Vec::new();
    rmp::encode::write_array_len(&mut b, 3).unwrap();
    mp_str(&mut b, "web.x");
    rmp::encode::write_array_len(&mut b, 4).unwrap();
    for (i, status) in ["200", "404", "x", "7"].iter().enumerate() {
        rmp::encode::write_array_len(&mut b, 2).unwrap();
        rmp::encode::write_uint(&mut b, now_secs() as u64).unwrap();
        rmp::encode::write_map_len(&mut b, 2).unwrap();
        mp_str(&mut b, "status");
        if i == 3 {
            rmp::encode::write_uint(&mut b, 7).unwrap();
        } else {
            mp_str(&mut b, status);
        }
        mp_str(&mut b, "path");
        mp_str(&mut b, "/");
    }
    rmp::encode::write_map_len(&mut b, 1).unwrap();
    mp_str(&mut b, "chunk");
    mp_str(&mut b, "t");
    send_acked(&mut s, &b, "t").unwrap();
    let counted = wait_until(Duration::from_secs(30), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_roll_type_mismatches_total",
            &[("route", "web"), ("column", "status")],
        ) == 3.0
    });
    assert!(counted, "{}", weir.log());
    assert_eq!(
        metric(
            &scrape(weir.metrics_port),
            "weir_roll_type_mismatches_total",
            &[("column", "path")]
        ),
        0.0
    );
    let log = weir.log();
    assert!(
        log.lines().any(|l| l.contains("another type")
            && l.contains("column=\"status\"")
            && l.contains("declared=\"int32\"")
            && l.contains("seen=\"string\"")),
        "{log}"
    );
}

/// Sinks are probed before traffic: a missing bucket, a wrong key, a
/// refused TD API key show as `weir_sink_up 0` within seconds of the start,
/// each with one log line that says what is wrong (one line, no XML); the
/// good sink shows 1. `weir check --probe` names the failures and exits
/// non-zero. A wrong S3 key is counted as a credential failure when an
/// upload meets it.
#[test]
fn sinks_are_probed_before_traffic_and_errors_say_what_happened() {
    use crate::servers::{GcsServer, S3Server, TdServer};
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path());
    let gcs = GcsServer::start();
    let td = TdServer::start();
    let bad_key = s3.sink_toml("wrongkey", "").replace(
        "secret_access_key = \"testing\"",
        "secret_access_key = \"nope\"",
    );
    // moto (as GCS) answers NoSuchBucket as GCS does; s3s-fs makes any bucket.
    let no_bucket = gcs.sink_toml("nobucket", "").replace(
        &format!("bucket = \"{}\"", GcsServer::BUCKET),
        "bucket = \"nope\"",
    );
    let td_bad = td.sink_toml("tdbad").replace(TdServer::APIKEY, "wrong-key");
    let weir = Weir::start(&format!("{bad_key}{no_bucket}{td_bad}"));
    let m = |sink: &str| {
        metric(
            &scrape(weir.metrics_port),
            "weir_sink_up",
            &[("sink", sink)],
        )
    };
    let probed = wait_until(Duration::from_secs(30), || {
        m("local") == 1.0 && m("wrongkey") == 0.0 && m("nobucket") == 0.0 && m("tdbad") == 0.0
    });
    assert!(probed, "{}", weir.log());
    let log = weir.log();
    let down = |sink: &str| {
        log.lines()
            .find(|l| l.contains("sink is DOWN") && l.contains(&format!("sink=\"{sink}\"")))
            .unwrap_or_else(|| panic!("no DOWN line for {sink}:\n{log}"))
            .to_string()
    };
    assert!(
        down("nobucket").contains("bucket nope does not exist"),
        "{}",
        down("nobucket")
    );
    assert!(
        down("wrongkey").contains("credentials refused"),
        "{}",
        down("wrongkey")
    );
    assert!(down("tdbad").contains("API key"), "{}", down("tdbad"));
    assert!(
        !log.lines().any(|l| l.trim_start().starts_with('<')),
        "a response body split a log line:\n{log}"
    );
    // weir check --probe says the same, and fails.
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "--probe", "-c"])
        .arg(&weir.config_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("sinks.nobucket: probe FAILED: bucket nope does not exist"),
        "{err}"
    );
    assert!(err.contains("sinks.local: probe ok"), "{err}");
    assert!(err.contains("3 sink(s) failed"), "{err}");
    // An upload meets the wrong key: counted as a credential failure.
    let mut s = connect(weir.port).unwrap();
    let req = forward_request("probe.x", &[(now_secs(), "a".into())], Some("p"), 0);
    send_acked(&mut s, &req, "p").unwrap();
    let counted = wait_until(Duration::from_secs(150), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_sink_auth_failures_total",
            &[("sink", "wrongkey")],
        ) >= 1.0
    });
    assert!(counted, "{}", weir.log());
    assert_eq!(m("local"), 1.0);
}

/// The image's entry command, run as the Dockerfile writes it: its
/// ENTRYPOINT and CMD verbatim, with the two files the image copies in
/// (the binary, docker/weir.toml at /etc/weir/weir.toml) taken from where
/// the Dockerfile copies them from, in a fresh folder standing for the
/// volume (its WORKDIR). With no other config it listens on every interface
/// and keeps everything under the volume.
#[test]
fn the_container_entry_command_runs_with_the_shipped_config() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let json_line = |kw: &str| -> Vec<String> {
        let line = dockerfile
            .lines()
            .find(|l| l.starts_with(kw))
            .unwrap_or_else(|| panic!("no {kw}"));
        serde_json::from_str(line[kw.len()..].trim()).unwrap()
    };
    let mut argv = json_line("ENTRYPOINT");
    argv.extend(json_line("CMD"));
    // What the image copies in, from where.
    let mut copies = std::collections::BTreeMap::new();
    for l in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let parts: Vec<&str> = l.split_whitespace().collect();
        let (from, to) = (parts[parts.len() - 2], parts[parts.len() - 1]);
        let source = if l.contains("--from=build") && from.ends_with("/release/weir") {
            std::path::PathBuf::from(env!("CARGO_BIN_EXE_weir"))
        } else {
            repo().join(from)
        };
        copies.insert(to.to_string(), source);
    }
    let args: Vec<std::ffi::OsString> = argv
        .iter()
        .map(|a| {
            copies
                .get(a)
                .map_or_else(|| a.into(), |p| p.clone().into_os_string())
        })
        .collect();
    assert!(args.len() > 1 && copies.contains_key(&argv[0]), "{argv:?}");
    let volume = tempfile::tempdir().unwrap();
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .current_dir(volume.path())
        .env("WEIR_LOG", "info")
        .stderr(std::fs::File::create(volume.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(volume.path().join("log")).unwrap_or_default();
    let up = wait_until(Duration::from_secs(30), || {
        http_get(24231, "/readyz").is_ok_and(|(c, _)| c == 200)
    });
    assert!(up, "{}", log());
    assert!(log().contains("listen=0.0.0.0:24224"), "{}", log());
    let mut s = connect(24224).unwrap();
    let req = forward_request("docker.x", &[(now_secs(), "d".into())], Some("d"), 0);
    send_acked(&mut s, &req, "d").unwrap();
    // A drain on stop: the file is finished and lands under the volume.
    std::fs::write(volume.path().join("drain-on-exit"), b"").unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", log());
    assert_eq!(
        count_rows(&volume.path().join("files")),
        (1, 1),
        "{}",
        log()
    );
    assert!(volume.path().join("wal").is_dir());
}
