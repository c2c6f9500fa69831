use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use weir::cli::{describe, load_config, Cli, Command};

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
        Command::Check { config } => {
            let c = load_config(Some(&config))?;
            // A closed stdout (weir check | head) is not an error worth a panic.
            let _ = writeln!(
                std::io::stdout(),
                "{}\n# {}: OK",
                describe(&c),
                config.display()
            );
            Ok(())
        }
        Command::Loadgen(args) => {
            let json = args.json;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = rt.block_on(weir::replay::loadgen::run(*args))?;
            let out = if json {
                serde_json::to_string(&report)?
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
        Command::Serve { config } => {
            let c = load_config(config.as_ref())?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("weir-io")
                .build()?;
            rt.block_on(weir::serve::run(c, shutdown_signal()))
        }
    }
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
