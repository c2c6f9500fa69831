//! Command-line interface: parse arguments, load config, call the stage.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "weir",
    version,
    about = "Fluentd forward protocol in, uniform hourly Parquet out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "WEIR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: crate::logging::LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the aggregator (with no config: 127.0.0.1:24224 → ./weir-data).
    Serve {
        /// Config file (TOML).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// On SIGTERM, finish every open file (the current hour's too) and
        /// deliver everything before exit: for a node that is going away for
        /// good. Touching `<data_dir>/drain-on-exit` does the same for one stop.
        #[arg(long)]
        drain_on_exit: bool,
        /// Overrides roll.period (1m to 24h, dividing a day): `--period 1m
        /// --grace 5s` shows a finished file a few seconds after each minute.
        #[arg(long)]
        period: Option<humantime::Duration>,
        /// Overrides roll.grace: how long a period's file stays open after
        /// the period ends, for stragglers.
        #[arg(long)]
        grace: Option<humantime::Duration>,
    },
    /// Finish and deliver everything a stopped node left in its data_dir
    /// (WAL, open files, outbox), without accepting traffic; exits 0 once
    /// every file is delivered.
    Drain {
        /// Config file (TOML) of the stopped node.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Give up delivering after this long (default: outbox.shutdown_timeout).
        #[arg(long)]
        timeout: Option<humantime::Duration>,
    },
    /// Send retained files (outbox.retain) again to one sink, for a range
    /// of periods and a tag pattern: restore after a loss, or backfill a
    /// sink added later. Works on a running node (through its outbox) and
    /// on a stopped node's data_dir; idempotent (the same keys again).
    Redeliver(RedeliverArgs),
    /// Validate a config file and print the resolved configuration (itself
    /// a valid config file, every default filled in).
    Check {
        /// Config file (TOML) to validate.
        #[arg(short, long)]
        config: PathBuf,
        /// Also probe every sink as `weir serve` does at start (bucket there
        /// and writable, API key valid, catalog reachable); exits non-zero
        /// when one fails.
        #[arg(long)]
        probe: bool,
    },
    /// Send synthetic forward traffic to any forward server and report
    /// events/s and ack latency percentiles.
    Loadgen(Box<crate::tools::LoadgenArgs>),
    /// Record forward traffic: a transparent proxy in front of any forward
    /// server that writes every client request to a capture file.
    Capture(crate::tools::CaptureArgs),
    /// Replay capture files against any forward server at any speed and
    /// report events/s and ack latency percentiles.
    Replay(Box<crate::tools::ReplayArgs>),
}

/// `weir redeliver` arguments.
#[derive(clap::Args, Debug)]
pub struct RedeliverArgs {
    /// Config file (TOML) of the node whose data_dir holds the files.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Sink to send to (a name under `[sinks]`).
    #[arg(long)]
    pub sink: String,
    /// First period to send, UTC: 2026-11-20T00 (an hour), 2026-11-20T00:30,
    /// 2026-11-20 or RFC 3339.
    #[arg(long)]
    pub from: String,
    /// End of the range (exclusive), same forms; default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// Tag pattern the files' tags must match (route syntax: `app.**`,
    /// `{a,b}.*`); a per-route file matches by its route name, a Treasure
    /// Data part by `db.table`.
    #[arg(long = "match", default_value = "**")]
    pub pattern: String,
    /// Give up on a file the sink keeps failing after this long.
    #[arg(long, default_value = "10m")]
    pub timeout: humantime::Duration,
}

/// Loads the config a command names, or the embedded default.
pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    load_config_with(path, &crate::config::Overrides::default())
}

/// [`load_config`] with command-line overrides.
pub fn load_config_with(
    path: Option<&PathBuf>,
    overrides: &crate::config::Overrides,
) -> anyhow::Result<Config> {
    Ok(Config::load_with(path.map(PathBuf::as_path), overrides)?)
}

/// Whether weir could use `data_dir`: it is a writable folder, or the
/// nearest folder above it that exists is writable (so it can be created).
pub fn check_data_dir(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let mut at = data_dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => anyhow::bail!(
                "data_dir {}: {} is not a folder",
                data_dir.display(),
                at.display()
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => at = p,
                    _ => {
                        at = std::path::Path::new(".");
                        break;
                    }
                }
            }
            Err(e) => anyhow::bail!("data_dir {}: {}: {e}", data_dir.display(), at.display()),
        }
    }
    if !is_writable(at) {
        anyhow::bail!(
            "data_dir {}: cannot be {} ({} is not writable)",
            data_dir.display(),
            if at == data_dir { "written" } else { "created" },
            at.display()
        );
    }
    Ok(())
}

fn is_writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access reads a NUL-terminated path and returns an int.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// The resolved config as a config file for `weir check`: every default
/// filled in, and valid input to weir itself (it resolves to the same).
pub fn describe(config: &Config) -> String {
    let mut doc = toml::Table::new();
    let mut put = |key: &str, v: Result<toml::Value, toml::ser::Error>| match v {
        Ok(v) => {
            doc.insert(key.into(), v);
        }
        Err(e) => tracing::warn!(section = key, error = %e, "cannot print a config section"),
    };
    put("node_id", Ok(config.node_id.clone().into()));
    put(
        "data_dir",
        Ok(config.data_dir.to_string_lossy().into_owned().into()),
    );
    let unmatched = match config.unmatched_route {
        Some(i) => config.routes[i].name.clone(),
        None => "drop".to_string(),
    };
    put("unmatched", Ok(unmatched.into()));
    put("forward", toml::Value::try_from(&config.forward));
    if let Some(http) = &config.http {
        put("http", toml::Value::try_from(http));
    }
    put("wal", toml::Value::try_from(&config.wal));
    put("roll", toml::Value::try_from(&config.roll));
    let routes = config
        .routes
        .iter()
        .map(|r| {
            let mut t = toml::Table::new();
            t.insert("name".into(), r.name.clone().into());
            t.insert("match".into(), r.pattern.clone().into());
            t.insert("prefix".into(), r.prefix.clone().into());
            t.insert(
                "sinks".into(),
                toml::Value::Array(r.sinks.iter().map(|s| s.clone().into()).collect()),
            );
            if let Ok(files) = toml::Value::try_from(r.files) {
                t.insert("files".into(), files);
            }
            let columns: toml::Table = r
                .columns
                .iter()
                .filter_map(|(k, ty)| Some((k.clone(), toml::Value::try_from(ty).ok()?)))
                .collect();
            t.insert("columns".into(), columns.into());
            toml::Value::Table(t)
        })
        .collect();
    put("route", Ok(toml::Value::Array(routes)));
    put("sinks", toml::Value::try_from(&config.sinks));
    put("outbox", toml::Value::try_from(&config.outbox));
    put("metrics", toml::Value::try_from(&config.metrics));
    put("log", toml::Value::try_from(&config.log));
    toml::to_string(&doc).unwrap_or_else(|e| format!("# cannot print the config: {e}\n"))
}

/// `weir check` for Iceberg sinks: reaches each catalog (15 s at most) and
/// says what starting would do to each table, as `# …` lines. A route whose
/// table refuses it (a changed column type, a removed column, a table
/// altered by someone else) is an error; an unreachable catalog only a
/// note (the config itself is valid).
///
/// # Errors
/// A sink cannot be built, or a table refuses its route.
pub async fn check_tables(c: &crate::config::Config) -> anyhow::Result<String> {
    let ctx = crate::sink::BuildContext {
        node_id: &c.node_id,
        data_dir: &c.data_dir,
        routes: &c.routes,
        metrics: crate::metrics::Metrics::new(),
    };
    let tables: std::collections::BTreeMap<String, crate::sink::config::SinkConfig> = c
        .sinks
        .iter()
        .filter(|(_, s)| matches!(s, crate::sink::config::SinkConfig::Iceberg(_)))
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    let mut out = String::new();
    // A local warehouse not made yet: nothing to reach, nothing created here.
    let tables: std::collections::BTreeMap<_, _> = tables
        .into_iter()
        .filter(|(name, s)| match s {
            crate::sink::config::SinkConfig::Iceberg(i) => match i.warehouse.local_path() {
                Some(p) if !p.exists() => {
                    out.push_str(&format!(
                        "# sinks.{name}: warehouse {} and its tables will be created\n",
                        p.display()
                    ));
                    false
                }
                _ => true,
            },
            _ => false,
        })
        .collect();
    let built = crate::sink::build_all(&tables, &ctx)?;
    for (name, sink) in &built.tables {
        let limit = std::time::Duration::from_secs(15);
        match tokio::time::timeout(limit, sink.check()).await {
            Ok(Ok(notes)) => {
                for n in notes {
                    out.push_str(&format!("# sinks.{name}: {n}\n"));
                }
            }
            Ok(Err(crate::sink::SinkError::Refused(why))) => anyhow::bail!("sinks.{name}: {why}"),
            Ok(Err(e)) => out.push_str(&format!(
                "# sinks.{name}: catalog not reachable ({e}); table shapes not checked\n"
            )),
            Err(_) => out.push_str(&format!(
                "# sinks.{name}: catalog did not answer in {} s; table shapes not checked\n",
                limit.as_secs()
            )),
        }
    }
    Ok(out)
}

/// `weir check --probe`: probes every sink as a start does, one `#` line
/// each; `Err` (with those lines) when one fails.
///
/// # Errors
/// A sink cannot be built or fails its probe.
pub async fn probe_sinks(c: &crate::config::Config) -> anyhow::Result<String> {
    let ctx = crate::sink::BuildContext {
        node_id: &c.node_id,
        data_dir: &c.data_dir,
        routes: &c.routes,
        metrics: crate::metrics::Metrics::new(),
    };
    let built = crate::sink::build_all(&c.sinks, &ctx)?;
    let mut out = String::new();
    let mut failed = 0;
    for (name, sink) in &built.sinks {
        match crate::sink::probe(sink.as_ref()).await {
            Ok(()) => out.push_str(&format!("# sinks.{name}: probe ok\n")),
            Err(why) => {
                failed += 1;
                out.push_str(&format!("# sinks.{name}: probe FAILED: {why}\n"));
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{out}{failed} sink(s) failed their probe");
    }
    Ok(out)
}
