//! Wires the stages together and runs them until shutdown.
//!
//! Start order is the reverse of data flow (outbox, roller, WAL, listener) so
//! every stage's consumer exists before its producer; stop order follows data
//! flow (listener, WAL, roller, outbox) so each stage drains into the next.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::backpressure::Backpressure;
use crate::config::Config;
use crate::health::Health;
use crate::http;
use crate::metrics::Metrics;
use crate::outbox::Backlog;
use crate::sink;
use crate::wal::{self, WalLinks, WalSettings};

mod downstream;
mod reload;

use downstream::{Downstream, Shared};
pub use reload::Reload;

/// How often the WAL passes the wall clock to the roller.
const TICK: Duration = Duration::from_millis(250);

/// A file in `data_dir` that turns the next stop into a drain (for a
/// permanent scale-down: `kubectl exec weir-2 -- touch /var/lib/weir/drain-on-exit`).
/// Removed at start, so it applies to one stop only.
pub(crate) const DRAIN_MARKER: &str = "drain-on-exit";

/// How a run starts and stops.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Serve the forward port and the metrics endpoint (`weir drain` does not).
    pub accept: bool,
    /// On stop, finish every open file (even the current period's) and
    /// deliver everything, instead of leaving the open period in the WAL.
    pub drain_on_exit: bool,
    /// How long a drain may deliver before giving up (default:
    /// `outbox.shutdown_timeout`).
    pub drain_timeout: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            accept: true,
            drain_on_exit: false,
            drain_timeout: None,
        }
    }
}

/// [`run_with`], counting into a registry the caller holds (benchmarks, embedding).
pub async fn run_with_metrics(
    config: Config,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with(config, metrics, RunOptions::default(), shutdown, None).await
}

/// `weir drain`: replays the WAL, finishes every file and delivers them all,
/// without accepting traffic. Fails if something is still undelivered.
pub async fn drain(config: Config, timeout: Option<Duration>) -> anyhow::Result<()> {
    let options = RunOptions {
        accept: false,
        drain_on_exit: true,
        drain_timeout: timeout,
    };
    run_with(
        config,
        Metrics::new(),
        options,
        std::future::ready(()),
        None,
    )
    .await
}

/// Runs weir with `config` until shutdown, with [`RunOptions`].
pub async fn run_with(
    config: Config,
    metrics: Metrics,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
    reload: Option<Reload>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let mut shutdown = std::pin::pin!(shutdown);
    let data_dir = &config.data_dir;
    // First, before anything in data_dir is read or changed: a second weir
    // on a live node's folder must leave it as it is, and so must a start
    // that cannot have its ports.
    crate::lock::DataDirLock::check_free(data_dir)?;
    let sockets = if options.accept {
        Some(Sockets::bind(&config).await?)
    } else {
        None
    };
    let _lock = crate::lock::DataDirLock::acquire(data_dir)?;

    crate::logging::set_lines_per_minute(config.log.lines_per_minute);
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }
    raise_open_file_limit(&config);
    check_roll_bounds(&config);

    let marker = data_dir.join(DRAIN_MARKER);
    if marker.exists() {
        std::fs::remove_file(&marker)
            .with_context(|| format!("removing {} left from a drain", marker.display()))?;
    }
    let drain_flag = Arc::new(AtomicBool::new(false));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let durable = wal::tail::Durable::new();
    let roller_position = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (release_tx, release_rx) = watch::channel(0u64);
    let (oldest_tx, oldest_rx) = watch::channel(0u64);
    let roller_status = crate::status::StageStatus::new();
    let sink_status = crate::status::SinkStatus::new();
    let (wal_state_tx, wal_state_rx) = watch::channel(wal::WalState::Healthy);
    let backlog = Backlog::new(config.outbox.max_backlog_bytes.0, metrics.clone());
    let backpressure = Backpressure::new(metrics.clone());
    let health = Arc::new(Health {
        listeners: Default::default(),
        wal: wal_state_rx,
        wal_dir_problem: std::sync::Mutex::new(None),
        backpressure: backpressure.clone(),
        wal_dir: data_dir.join("wal"),
        backpressure_grace: config.metrics.backpressure_grace.0,
        backlog: backlog.clone(),
        roller: roller_status.clone(),
        sinks: sink_status.clone(),
    });
    let (metrics_listener, input_sockets) = match sockets {
        Some(s) => (Some(s.metrics), Some(s.inputs)),
        None => (None, None),
    };
    if let Some(s) = &input_sockets {
        s.expect(&health.listeners);
    }

    let shared = Shared {
        data_dir: data_dir.clone(),
        metrics: metrics.clone(),
        durable: durable.clone(),
        position: roller_position.clone(),
        release: Arc::new(release_tx),
        oldest: oldest_rx,
        backlog: backlog.clone(),
        drain: drain_flag.clone(),
        roller_status,
        sink_status,
    };
    let limits = crate::input::Limits::new(
        &config.forward,
        &metrics,
        backpressure.clone(),
        health.wal.clone(),
    );
    // Behind the WAL first, so the WAL's reader exists before its writer.
    let mut downstream = Downstream::start(config.clone(), &shared).await?;
    let (wal, wal_thread) = wal::start(
        WalSettings {
            dir: data_dir.join("wal"),
            durability: config.wal.durability,
            segment_bytes: config.wal.segment_bytes.0,
            max_group_bytes: config.wal.max_group_bytes.as_usize(),
            dedupe_window: config.forward.dedupe_window,
            max_backlog_bytes: config.wal.max_backlog_bytes.0,
            disk_reserve: config
                .wal
                .disk_reserve_bytes(config.roll.max_buffer_bytes.0),
        },
        WalLinks {
            durable: durable.clone(),
            roller_position,
            release: release_rx,
            oldest: oldest_tx,
            state: wal_state_tx,
            stop: shutdown_rx.clone(),
            backpressure,
            metrics: metrics.clone(),
        },
    )
    .with_context(|| {
        format!(
            "opening the write-ahead log in {}",
            data_dir.join("wal").display()
        )
    })?;

    let ticker = {
        let wal = wal.clone();
        let mut sd = shutdown_rx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            loop {
                let stop = tokio::select! {
                    _ = every.tick() => false,
                    _ = sd.wait_for(|s| *s) => true,
                };
                if stop || wal.tick().await.is_err() {
                    break;
                }
            }
        })
    };

    let http = metrics_listener.map(|l| {
        tokio::spawn(http::run(
            l,
            metrics.clone(),
            health.clone(),
            shutdown_rx.clone(),
        ))
    });
    // Accepting once the WAL has read what is on disk: appends before that
    // would only wait, and "accepting" then means it.
    let recovered = durable.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let mut m = recovered.get();
        while !m.recovered && !m.closed {
            m = recovered.wait_change(m, Duration::from_millis(250));
        }
    })
    .await;
    let inputs = match input_sockets {
        Some(sockets) => {
            let running = crate::input::start(
                &input_settings(&config),
                sockets,
                wal.clone(),
                &limits,
                &metrics,
                &shutdown_rx,
                &health.listeners,
            )?;
            tracing::info!(
                listen = %config.forward.listen,
                http = %config.http.as_ref().map_or("off".to_string(), |h| h.listen.to_string()),
                metrics = %format!("http://{}/metrics", config.metrics.listen),
                node_id = config.node_id,
                data_dir = %data_dir.display(),
                period = %humantime::format_duration(config.roll.period.0),
                "weir is accepting forward traffic"
            );
            Some(running)
        }
        None => None,
    };
    drop(wal);

    let mut running = config.clone();
    let mut reload = reload;
    let mut failure = None;
    let mut delivery_ended = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                if options.accept {
                    tracing::info!("shutting down: no new connections; finishing requests in flight");
                }
                break;
            }
            r = &mut downstream.roller => {
                let why = match r {
                    Ok(Ok(Err(e))) => e.to_string(),
                    _ => "roller stopped unexpectedly".to_string(),
                };
                failure = Some(why);
                break;
            }
            r = &mut downstream.delivery => {
                // It ends on its own only by a bug; stop, so a supervisor
                // restarts weir rather than it acking into a dead outbox.
                delivery_ended = true;
                failure = Some(match r {
                    Err(e) if e.is_panic() => "outbox delivery panicked".to_string(),
                    _ => "outbox delivery stopped unexpectedly".to_string(),
                });
                break;
            }
            Some(()) = reload::next(&mut reload) => {
                match reload::apply(&running, reload.as_ref(), downstream, &shared).await {
                    Ok((config, next)) => {
                        running = config;
                        downstream = next;
                    }
                    Err(e) => {
                        failure = Some(e);
                        return stop_after_failure(failure);
                    }
                }
            }
        }
    }
    let draining = options.drain_on_exit || marker.exists();
    if draining {
        tracing::info!("draining: finishing every open file and delivering it before exit");
        drain_flag.store(true, Ordering::Relaxed);
    }
    let _ = shutdown_tx.send(true);
    downstream.stopping();
    if let Some(inputs) = inputs {
        inputs.stopped().await;
    }
    let _ = ticker.await;
    downstream.probes_done().await;
    // Every WAL handle is gone now: the writer syncs and stops, then the roller.
    let _ = tokio::task::spawn_blocking(move || wal_thread.join()).await;
    if failure.is_none() {
        if let Ok(Ok(Err(e))) = (&mut downstream.roller).await {
            failure = Some(e.to_string());
        }
    }
    let limit = match (draining, options.drain_timeout) {
        (true, Some(t)) => t,
        _ => running.outbox.shutdown_timeout.0,
    };
    let mut undelivered = false;
    if !delivery_ended
        && tokio::time::timeout(limit, &mut downstream.delivery)
            .await
            .is_err()
    {
        undelivered = true;
        tracing::warn!(
            timeout = %humantime::format_duration(limit),
            "files still waiting for a sink at shutdown; they are delivered at the next start"
        );
        let _ = downstream.delivery_stop.send(true);
        let _ = (&mut downstream.delivery).await;
    }
    if let Some(h) = http {
        let _ = h.await;
    }
    if draining && undelivered && failure.is_none() {
        failure = Some(format!(
            "drain incomplete: files still wait for a sink after {}; they stay in {} (run `weir drain` again)",
            humantime::format_duration(limit),
            data_dir.join("outbox").display()
        ));
    }
    stop_after_failure(failure)
}

/// The run's end: `Err` with why when a stage failed.
fn stop_after_failure(failure: Option<String>) -> anyhow::Result<()> {
    match failure {
        Some(why) => anyhow::bail!("stopped after a failure: {why}"),
        None => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
    }
}

/// Warns when roll.max_buffer_bytes cannot hold roll.max_open_files files'
/// fixed cost: files are then finished early for memory before the
/// open-file bound is reached.
/// How long a replaced preview stays in a sink: twice `roll.freshness`,
/// at least 10 s, so a query that listed it a moment before can read it.
pub(crate) fn preview_linger(config: &Config) -> Duration {
    config.roll.freshness.map_or(Duration::from_secs(10), |f| {
        (f.0 * 2).max(Duration::from_secs(10))
    })
}

fn check_roll_bounds(config: &Config) {
    let fits = config.roll.max_buffer_bytes.as_usize() / crate::roll::FILE_OVERHEAD;
    if fits < config.roll.max_open_files {
        tracing::warn!(
            max_open_files = config.roll.max_open_files,
            fits,
            "roll.max_buffer_bytes holds the fixed cost of only this many open files (about 160 KiB each); more are finished early"
        );
    }
}

/// Raises the soft limit on open files to what the configured bounds need
/// (connections, open files, WAL and sockets), up to the hard limit, and
/// warns when even that leaves `roll.max_open_files` too little room.
fn raise_open_file_limit(config: &Config) {
    let files = config.roll.max_open_files as u64;
    let wanted = config.forward.max_connections as u64 + files + 256;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < files * 2 + 256 => tracing::warn!(
            limit,
            max_open_files = files,
            "the open-file limit (ulimit -n) leaves little room beside roll.max_open_files; raise the limit or lower roll.max_open_files"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
}

/// The inputs' settings from the config's sections.
fn input_settings(config: &Config) -> crate::input::Settings<'_> {
    crate::input::Settings {
        forward: &config.forward,
        forward_tls: config.tls_server.clone(),
        http: config.http.as_ref(),
    }
}

/// The ports weir serves on, bound before data_dir is touched, so a port in
/// use fails the start with data_dir as it was.
struct Sockets {
    metrics: TcpListener,
    inputs: crate::input::Sockets,
}

impl Sockets {
    async fn bind(config: &Config) -> anyhow::Result<Self> {
        let metrics = TcpListener::bind(config.metrics.listen)
            .await
            .with_context(|| {
                format!("metrics.listen: cannot listen on {}", config.metrics.listen)
            })?;
        let inputs = crate::input::Sockets::bind(&input_settings(config)).await?;
        Ok(Self { metrics, inputs })
    }
}

/// How long the start waits for an Iceberg catalog before going on without
/// it (commits retry until it answers).
const PREPARE_TIMEOUT: Duration = Duration::from_secs(15);

/// Brings every Iceberg sink's tables to their routes' shape before traffic:
/// a route asking for a change its table refuses (a column's type changed,
/// a column removed) stops the start with the route and column named; an
/// unreachable catalog or a table someone else altered is logged and
/// counted, and the files wait in the outbox meanwhile.
pub(crate) async fn prepare_tables(
    tables: &std::collections::BTreeMap<String, Arc<dyn sink::TableSink>>,
) -> anyhow::Result<()> {
    for (name, t) in tables {
        match tokio::time::timeout(PREPARE_TIMEOUT, t.prepare()).await {
            Ok(Ok(())) => tracing::info!(sink = name, "Iceberg tables ready"),
            Ok(Err(sink::SinkError::Refused(why))) => {
                anyhow::bail!("sinks.{name}: {why}")
            }
            Ok(Err(e)) => tracing::warn!(sink = name, error = %e,
                "Iceberg catalog or table not usable yet; files wait in the outbox and commits retry"),
            Err(_) => tracing::warn!(
                sink = name,
                timeout_s = PREPARE_TIMEOUT.as_secs(),
                "Iceberg catalog did not answer; files wait in the outbox and commits retry"
            ),
        }
    }
    Ok(())
}
