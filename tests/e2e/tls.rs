//! TLS on the forward port, with certificates made by the openssl CLI:
//! @fluent-org/logger over TLS (with the shared-key handshake and acks),
//! mTLS that turns away a client without a certificate, plain TCP refused on
//! a TLS port, and `weir check` failing on a missing certificate file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn openssl(dir: &Path, args: &[&str]) {
    run_ok(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
pub fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=weir test CA",
        ],
    );
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

pub fn tls_toml(dir: &Path, mtls: bool) -> String {
    let mut s = format!(
        "[forward.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    if mtls {
        s.push_str(&format!("ca_path = \"{}\"\n", dir.join("ca.pem").display()));
    }
    s
}

fn node_client(port: u16, dir: &Path, with_cert: bool, t: i64) -> std::process::Output {
    let mut c = Command::new("node");
    c.env("NODE_PATH", node_path())
        .env("WEIR_TLS_CA", dir.join("ca.pem"))
        .env("WEIR_SHARED_KEY", "k")
        .arg(support("fluent_org_client.js"))
        .args([
            &port.to_string(),
            "Forward",
            "tls",
            "node",
            "20",
            &t.to_string(),
        ]);
    if with_cert {
        c.env("WEIR_TLS_CERT", dir.join("client.pem"))
            .env("WEIR_TLS_KEY", dir.join("client.key"));
    }
    c.output().unwrap()
}

#[test]
fn tls_and_mtls_with_a_real_client() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let security = "[forward.security]\nself_hostname = \"weir-server\"\nshared_key = \"k\"\n";
    let weir = Weir::start(&format!("{}{security}", tls_toml(certs.path(), true)));
    let t = now_secs();
    let out = node_client(weir.port, certs.path(), true, t);
    assert!(out.status.success(), "{out:?}\n{}", weir.log());
    // weir's own load tools over mTLS, verifying the server by name and by address.
    let path = |f: &str| certs.path().join(f).display().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    for host in ["localhost", "127.0.0.1"] {
        loadgen(
            &format!("{host}:{}", weir.port),
            &[
                "--connections",
                "1",
                "--requests",
                "3",
                "--events-per-request",
                "10",
                "--shared-key",
                "k",
                "--tags",
                "tls.loadgen",
                "--tls-ca",
                &ca,
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ],
        );
    }

    // No client certificate under mTLS: the TLS handshake fails (the
    // server counts it; openssl's own exit code varies by TLS version).
    Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", weir.port),
            "-CAfile",
        ])
        .arg(certs.path().join("ca.pem"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Plain TCP on a TLS port: refused at the TLS layer.
    let mut plain = connect(weir.port).unwrap();
    let _ = std::io::Write::write_all(
        &mut plain,
        &forward_request("plain", &[(t, "p".into())], Some("p"), 0),
    );
    let mut b = [0u8; 64];
    let n = std::io::Read::read(&mut plain, &mut b).unwrap_or(0);
    assert!(
        n == 0 || b[0] == 0x15,
        "no ack over plain TCP: {:02x?}",
        &b[..n]
    );
    let failed = wait_until(Duration::from_secs(10), || {
        metric(
            &scrape(weir.metrics_port),
            "weir_forward_handshake_failures_total",
            &[("reason", "tls")],
        ) >= 2.0
    });
    assert!(failed, "TLS failures not counted\n{}", weir.log());

    let ok = wait_until(Duration::from_secs(150), || !weir.output_files().is_empty());
    assert!(ok, "{}", weir.log());
    let ok = wait_until(Duration::from_secs(150), || weir.output_files().len() >= 2);
    assert!(ok, "{:?}\n{}", weir.output_files(), weir.log());
    let rows = read_rows(&weir.out_dir());
    assert_eq!(rows.iter().filter(|r| r.tag == "tls.node").count(), 20);
    assert_eq!(rows.iter().filter(|r| r.tag == "tls.loadgen").count(), 60);
    assert_eq!(rows.len(), 80);
}

#[test]
fn weir_check_names_a_missing_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        "node_id = 'n'\n[forward.tls]\ncert_path = '/nonexistent/cert.pem'\nkey_path = '/nonexistent/key.pem'\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("forward.tls.cert_path") && err.contains("/nonexistent/cert.pem"),
        "{err}"
    );
}
