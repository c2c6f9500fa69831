//! `weir check`: its printed config is a valid config that resolves to the
//! same thing; it refuses a data_dir that cannot be created; a missing file
//! is named once.

use std::process::Command;

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

fn check(path: &std::path::Path) -> std::process::Output {
    weir().arg("check").arg("-c").arg(path).output().unwrap()
}

/// The printed config without the trailing `# FILE: OK` line.
fn printed(out: &std::process::Output) -> String {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    text.lines()
        .filter(|l| !(l.starts_with("# ") && l.ends_with(": OK")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_printed_config_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("weir.toml");
    std::fs::write(
        &first,
        format!(
            r#"node_id = "n1"
data_dir = "{data}"
unmatched = "rest"
[forward]
listen = "127.0.0.1:24224"
tag_prefix = "edge"
[forward.security]
self_hostname = "weir-server"
shared_key = "k"
user_auth = true
users = [{{ username = "alice", password = "pw" }}]
[http]
listen = "127.0.0.1:9881"
bearer_token = "t0ken"
use_204_response = true
cors_allow_origins = ["https://app.example"]
[roll]
period = "5m"
max_past = "1d"
[[route]]
name = "k8s"
match = "kube.** pod.*"
files = "per_route"
prefix = "team-a"
sinks = ["lake"]
columns = {{ level = "string", status = "int64" }}
[[route]]
name = "rest"
match = "**"
[sinks.lake]
type = "local"
path = "{out}"
[sinks.sandbox]
type = "local"
path = "{out}2"
"#,
            data = dir.path().join("data").display(),
            out = dir.path().join("out").display()
        ),
    )
    .unwrap();
    let out = check(&first);
    assert!(out.status.success(), "{out:?}");
    let text = printed(&out);
    for needle in [
        "[forward.security]",
        "name = \"k8s\"",
        "files = \"per_route\"",
        "prefix = \"team-a\"",
        "unmatched = \"rest\"",
        "[http]",
        "use_204_response = true",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    let second = dir.path().join("printed.toml");
    std::fs::write(&second, &text).unwrap();
    let again = check(&second);
    assert!(
        again.status.success(),
        "weir check on its own output failed:\n{}\n{text}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        printed(&again),
        text,
        "the printed config resolves to itself"
    );
}

#[test]
fn a_data_dir_that_cannot_be_created_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!("data_dir = \"{}\"\n", file.join("data").display()),
    )
    .unwrap();
    let out = check(&config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("data_dir") && err.contains("not a folder"),
        "{err}"
    );
}

#[test]
fn a_missing_config_file_is_named_once_with_its_cause() {
    let out = check(std::path::Path::new("/nonexistent/weir.toml"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("/nonexistent/weir.toml"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}
