//! Real storage servers for sink tests, started per test on free ports:
//! - s3s-fs (crates.io): an S3 server that checks SigV4 signatures and keeps
//!   objects as plain files;
//! - moto (PyPI) as the GCS XML endpoint. object_store's GCS client speaks
//!   GCS's XML API, which moto serves through its S3-compatible handlers;
//!   this proves weir's real GCS client code, keys and bytes, but not Google's
//!   OAuth flow or GCS generation preconditions (see ../shared/testing.md).

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

fn bin(rel: &str) -> PathBuf {
    let p = repo().join("target/testinfra").join(rel);
    assert!(
        p.exists(),
        "{} missing: run the suite with scripts/test",
        p.display()
    );
    p
}

fn wait_port(port: u16) {
    let up = wait_until(Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "server on {port} did not start");
}

/// An s3s-fs server with bucket `logs`.
pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    pub root: PathBuf,
}

impl S3Server {
    pub const BUCKET: &'static str = "logs";

    pub fn start(root: &Path) -> Self {
        std::fs::create_dir_all(root.join(Self::BUCKET)).unwrap();
        let mut s = Self {
            child: None,
            port: free_port(),
            root: root.to_path_buf(),
        };
        s.restart();
        s
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(bin("s3s/bin/s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", "testing", "--secret-key", "testing"])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn s3s-fs");
        self.child = Some(child);
        wait_port(self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// weir sink config for this server.
    pub fn sink_toml(&self, name: &str, prefix: &str) -> String {
        format!(
            "[sinks.{name}]\ntype = \"s3\"\nbucket = \"{}\"\nprefix = \"{prefix}\"\nendpoint = \"{}\"\nallow_http = true\nregion = \"us-east-1\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n",
            Self::BUCKET,
            self.endpoint()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// moto serving the GCS XML API, with bucket `sandbox`.
pub struct GcsServer {
    child: Child,
    pub port: u16,
}

impl GcsServer {
    // No "-": the GCS client percent-encodes it in the path, and moto
    // does not decode bucket names.
    pub const BUCKET: &'static str = "sandbox";

    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(bin("venv/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        wait_port(port);
        // Create the bucket (moto's S3 handler serves this path).
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "PUT /{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            Self::BUCKET
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        Self { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// weir sink config: the service account names this endpoint
    /// (`gcs_base_url`) and turns OAuth off; a static token is sent.
    pub fn sink_toml(&self, name: &str, prefix: &str) -> String {
        let key = format!(
            r#"{{"gcs_base_url":"{}","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}}"#,
            self.endpoint()
        );
        format!(
            "[sinks.{name}]\ntype = \"gcs\"\nbucket = \"{}\"\nprefix = \"{prefix}\"\nservice_account_key = '{key}'\nbearer_token = \"test-token\"\n",
            Self::BUCKET
        )
    }
}

impl Drop for GcsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Objects (key → size) and rows, read back from a server over the S3
/// protocol with pyarrow.
pub fn read_bucket(endpoint: &str, bucket: &str) -> (BTreeMap<String, u64>, Vec<Row>) {
    let out = run_ok(
        Command::new(python())
            .arg(support("read_s3.py"))
            .args([endpoint, bucket]),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let head: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let objects = head["objects"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    let rows = lines.map(Row::from_json_line).collect();
    (objects, rows)
}

/// The strict Treasure Data import endpoint in tests/support/td_mock.py
/// (nothing installable emulates TD).
pub struct TdServer {
    child: Child,
    pub port: u16,
}

impl TdServer {
    pub const APIKEY: &'static str = "1/testkey";

    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// On a port chosen earlier (a sink configured before its server is up).
    pub fn start_on(port: u16) -> Self {
        let child = Command::new(python())
            .arg(support("td_mock.py"))
            .args([&port.to_string(), Self::APIKEY])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn td_mock.py");
        wait_port(port);
        Self { child, port }
    }

    pub fn sink_toml(&self, name: &str) -> String {
        Self::sink_toml_for(name, self.port)
    }

    pub fn sink_toml_for(name: &str, port: u16) -> String {
        format!(
            "[sinks.{name}]\ntype = \"td\"\napikey = \"{}\"\nendpoint = \"http://127.0.0.1:{port}\"\nflush_interval = \"2s\"\n",
            Self::APIKEY,
        )
    }

    /// What the endpoint received.
    pub fn state(&self) -> Value {
        let (status, body) = http_get(self.port, "/__state").unwrap();
        assert_eq!(status, 200);
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for TdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
