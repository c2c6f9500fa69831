use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use weir::cli::{describe, load_config, load_config_with, Cli, Command};

/// jemalloc instead of glibc's malloc: with many threads glibc keeps an
/// arena per thread and fragments them, which roughly doubled weir's RSS
/// over `roll.max_buffer_bytes` with thousands of open files (445 MiB
/// against 230 MiB with `MALLOC_ARENA_MAX=2`, same load).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings: a background thread returns freed memory to the
/// OS within about a second (the default keeps it for ten), so RSS follows
/// what weir holds after a burst of large requests.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:1000\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    weir::logging::init(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { config, probe } => {
            let c = load_config(Some(&config))?;
            weir::cli::check_data_dir(&c.data_dir)?;
            let rt = runtime()?;
            // A probe does what a start does (it creates a missing Iceberg
            // table), so it runs first and the table check sees the result.
            let probed = if probe {
                rt.block_on(weir::cli::probe_sinks(&c))?
            } else {
                String::new()
            };
            let mut tables = rt.block_on(weir::cli::check_tables(&c))?;
            tables.push_str(&probed);
            for w in &c.warnings {
                tables.push_str(&format!("# warning: {w}\n"));
            }
            // A closed stdout (weir check | head) is not an error worth a panic.
            let _ = writeln!(
                std::io::stdout(),
                "{}\n{tables}# {}: OK",
                describe(&c),
                config.display()
            );
            Ok(())
        }
        Command::Loadgen(args) => {
            let json = args.json;
            let report = runtime()?.block_on(weir::tools::loadgen::run(*args))?;
            print_report(&report, json)
        }
        Command::Replay(args) => {
            let json = args.json;
            let report =
                runtime()?.block_on(weir::tools::playback::run(*args, shutdown_signal()))?;
            print_report(&report, json)
        }
        Command::Capture(args) => {
            let json = args.json;
            let (report, summary) =
                runtime()?.block_on(weir::tools::capture::run(args, shutdown_signal()))?;
            eprintln!("{summary}");
            print_report(&report, json)
        }
        Command::Serve {
            config,
            drain_on_exit,
            period,
            grace,
        } => {
            let overrides = weir::config::Overrides {
                period: period.map(Into::into),
                grace: grace.map(Into::into),
            };
            let c = load_config_with(config.as_ref(), &overrides)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("weir-io")
                .build()?;
            let options = weir::serve::RunOptions {
                drain_on_exit,
                ..Default::default()
            };
            rt.block_on(async {
                let (stop, signals) = weir::signals::listen();
                let reload = weir::serve::Reload {
                    path: config.clone(),
                    overrides,
                    signals,
                };
                weir::serve::run_with(
                    c,
                    weir::metrics::Metrics::new(),
                    options,
                    async {
                        let _ = stop.await;
                    },
                    Some(reload),
                )
                .await
            })
        }
        Command::Redeliver(args) => {
            let c = load_config(args.config.as_ref())?;
            let from = weir::outbox::redeliver::parse_time(&args.from)
                .map_err(|e| anyhow::anyhow!("--from {e}"))?;
            let to = match &args.to {
                Some(t) => weir::outbox::redeliver::parse_time(t)
                    .map_err(|e| anyhow::anyhow!("--to {e}"))?,
                None => chrono::Utc::now().timestamp(),
            };
            anyhow::ensure!(
                args.timeout.as_secs() <= weir::outbox::redeliver::MAX_TIMEOUT_SECS,
                "--timeout {}: at most 7d",
                args.timeout
            );
            let req = weir::outbox::redeliver::Request {
                sink: args.sink,
                from,
                to,
                pattern: args.pattern,
                timeout_secs: args.timeout.as_secs(),
            };
            let summary = runtime()?.block_on(weir::outbox::redeliver::run(c, req))?;
            let _ = writeln!(std::io::stdout(), "{summary}");
            Ok(())
        }
        Command::Drain { config, timeout } => {
            let c = load_config(config.as_ref())?;
            runtime()?.block_on(weir::serve::drain(c, timeout.map(Into::into)))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Prints a load tool's summary; failed requests make the exit status 1.
fn print_report(report: &weir::tools::report::Report, json: bool) -> anyhow::Result<()> {
    let out = if json {
        serde_json::to_string(report)?
    } else {
        report.text()
    };
    let _ = writeln!(std::io::stdout(), "{out}");
    anyhow::ensure!(
        report.failed_requests == 0 && report.failed_connections == 0,
        "{} requests and {} connections failed",
        report.failed_requests,
        report.failed_connections
    );
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
