//! A real PostgreSQL server for the tests, started from Debian's
//! `postgresql` package into a temporary folder (never the system service):
//! a tier's shared Iceberg catalog. `scripts/test` installs the package.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// The server's binaries: the newest `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server not found under /usr/lib/postgresql/*/bin: scripts/test installs it \
             (apt-get install postgresql), or install Debian's postgresql package"
        )
    })
}

/// A running server with a database `iceberg`, user `weir`, password `weir`
/// (scram), listening on 127.0.0.1.
pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
}

/// Runs a server binary as the `postgres` user when we are root (initdb
/// refuses root).
fn as_postgres(bin: &std::path::Path, args: &[&str]) -> Command {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin).args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

impl Postgres {
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "weir\n").unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let d = data.to_str().unwrap();
        run_ok(&mut as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                d,
                "-U",
                "weir",
                "-A",
                "scram-sha-256",
                "--pwfile",
                pw.to_str().unwrap(),
                "--no-sync",
            ],
        ));
        let pg = Self {
            port: free_port(),
            bin,
            dir,
        };
        pg.up();
        run_ok(
            Command::new(pg.bin.join("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &pg.port.to_string(),
                    "-U",
                    "weir",
                    "iceberg",
                ])
                .env("PGPASSWORD", "weir"),
        );
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").to_string_lossy().into_owned();
        run_ok(&mut as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        ));
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(30), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "postgres did not start"
        );
    }

    /// Stops the server at once (connections are cut).
    pub fn down(&self) {
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
        .output();
    }

    /// For weir's `catalog_uri`.
    pub fn uri(&self) -> String {
        format!("postgres://weir:weir@127.0.0.1:{}/iceberg", self.port)
    }

    /// For pyiceberg's SqlCatalog (SQLAlchemy).
    pub fn sqlalchemy_uri(&self) -> String {
        format!(
            "postgresql+psycopg2://weir:weir@127.0.0.1:{}/iceberg",
            self.port
        )
    }

    /// Runs one SQL statement with psql.
    pub fn sql(&self, statement: &str) -> String {
        let out = run_ok(
            Command::new(self.bin.join("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "weir",
                    "-d",
                    "iceberg",
                    "-tAc",
                    statement,
                ])
                .env("PGPASSWORD", "weir"),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.down();
    }
}
