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
    },
    /// Finish and deliver everything a stopped node left in its data_dir
    /// (WAL, open files, outbox), without accepting traffic; exits 0 once
    /// every file is delivered.
    Drain {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Give up delivering after this long (default: outbox.shutdown_timeout).
        #[arg(long)]
        timeout: Option<humantime::Duration>,
    },
    /// Validate a config file and print the resolved configuration.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Send synthetic forward traffic to any forward server and report
    /// events/s and ack latency percentiles.
    Loadgen(Box<crate::replay::loadgen::LoadgenArgs>),
    /// Record forward traffic: a transparent proxy in front of any forward
    /// server that writes every client request to a capture file.
    Capture(crate::capture::proxy::CaptureArgs),
    /// Replay capture files against any forward server at any speed and
    /// report events/s and ack latency percentiles.
    Replay(Box<crate::replay::playback::ReplayArgs>),
}

/// Loads the config a command names, or the embedded default.
pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::embedded()?,
    })
}

/// The resolved config as TOML-like text for `weir check`.
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "node_id  = {:?}\ndata_dir = {:?}\n",
        config.node_id, config.data_dir
    ));
    let section = |name: &str, v: &dyn erased::Ser| format!("\n[{name}]\n{}", v.toml());
    out.push_str(&section("forward", &config.forward));
    out.push_str(&section("wal", &config.wal));
    out.push_str(&section("roll", &config.roll));
    for r in &config.routes {
        out.push_str(&format!(
            "\n# {}\n[[route]]\nmatch   = {:?}\nsinks   = {:?}\ncolumns = {{ {} }}\n",
            r.name,
            r.pattern,
            r.sinks,
            r.columns
                .iter()
                .map(|(k, t)| format!("{k} = {:?}", format!("{t:?}").to_lowercase()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (name, s) in &config.sinks {
        out.push_str(&section(&format!("sinks.{name}"), s));
    }
    out.push_str(&section("outbox", &config.outbox));
    out.push_str(&section("metrics", &config.metrics));
    out
}

mod erased {
    /// Serialize to TOML text without naming the type at the call site.
    pub trait Ser {
        fn toml(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn toml(&self) -> String {
            toml::to_string(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
        }
    }
}
