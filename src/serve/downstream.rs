//! What runs behind the WAL, built from one config: the sinks (and their
//! probes), outbox delivery and the roller. A reload stops it and builds it
//! again from the new config while the WAL and the listener go on: the
//! roller stops with its open files' events still in the WAL (they are not
//! released before their files are finished), delivery stops with its files
//! still in the outbox, and the new ones pick both up as a start does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbox::{self, Backlog, DeliveryLinks, OutboxDir};
use crate::roll::{self, RollerError, RollerLinks};
use crate::sink;
use crate::status::{SinkStatus, StageStatus};

/// What every generation shares with the WAL and the rest of the process.
pub(super) struct Shared {
    pub data_dir: PathBuf,
    pub(crate) metrics: Metrics,
    pub durable: Arc<crate::wal::Durable>,
    pub(crate) position: Arc<AtomicU64>,
    pub release: Arc<watch::Sender<u64>>,
    pub oldest: watch::Receiver<u64>,
    pub(crate) backlog: Arc<Backlog>,
    pub(crate) drain: Arc<AtomicBool>,
    pub(crate) roller_status: Arc<StageStatus>,
    pub(crate) sink_status: Arc<SinkStatus>,
}

/// One generation of the stages behind the WAL.
pub(super) struct Downstream {
    pub(crate) roller: JoinHandle<std::thread::Result<Result<(), RollerError>>>,
    pub(crate) delivery: JoinHandle<()>,
    probes: JoinHandle<()>,
    /// Stops the roller (leaving its open files in the WAL unless draining)
    /// and the probes.
    roller_stop: watch::Sender<bool>,
    /// Stops delivery at once (files stay in the outbox).
    pub(crate) delivery_stop: watch::Sender<bool>,
}

impl Downstream {
    /// Builds the sinks, checks the Iceberg tables, and starts delivery and
    /// the roller.
    ///
    /// # Errors
    /// A sink cannot be built, a table refuses its route, or the outbox or
    /// roller cannot open their folders.
    pub(super) async fn start(config: Arc<Config>, shared: &Shared) -> anyhow::Result<Self> {
        let data_dir = &shared.data_dir;
        let outbox_dir = OutboxDir::open(data_dir.join("outbox"))
            .with_context(|| format!("opening the outbox in data_dir {}", data_dir.display()))?;
        let initial = outbox_dir
            .load(&shared.metrics)
            .with_context(|| format!("reading the outbox in data_dir {}", data_dir.display()))?;
        let built = sink::build_all(
            &config.sinks,
            &sink::BuildContext {
                node_id: &config.node_id,
                data_dir,
                routes: &config.routes,
                metrics: shared.metrics.clone(),
            },
        )?;
        super::prepare_tables(&built.tables).await?;
        let sinks = built.sinks;
        let (roller_stop, roller_stop_rx) = watch::channel(false);
        let probes = sink::probe::start(
            &sinks,
            shared.metrics.clone(),
            shared.sink_status.clone(),
            roller_stop_rx.clone(),
        );
        let retention = outbox::Retention::open(
            data_dir.join(outbox::redeliver::RETAINED_DIR),
            config.outbox.retain.0,
            config.outbox.retain_bytes.0,
            shared.metrics.clone(),
        )
        .with_context(|| {
            format!(
                "opening {} (outbox.retain)",
                data_dir.join(outbox::redeliver::RETAINED_DIR).display()
            )
        })?;
        let (finished_tx, finished_rx) = mpsc::channel(1024);
        // Delivery stops last: after the roller, once the outbox is empty or
        // outbox.shutdown_timeout has passed.
        let (delivery_stop, delivery_stop_rx) = watch::channel(false);
        // This generation counts its own backlog from the outbox's files.
        shared.backlog.reset(config.outbox.max_backlog_bytes.0);
        let delivery = outbox::start_delivery(
            outbox_dir.clone(),
            sinks,
            initial.clone(),
            DeliveryLinks {
                finished: finished_rx,
                wal_oldest: shared.oldest.clone(),
                shutdown: delivery_stop_rx,
                metrics: shared.metrics.clone(),
                backlog: shared.backlog.clone(),
                redeliver: outbox::redeliver::LiveJobs::new(config.clone()),
                object_sinks: config
                    .sinks
                    .iter()
                    .filter(|(_, s)| s.capabilities().lists)
                    .map(|(n, s)| (n.clone(), (s.prefix().to_string(), s.fresh())))
                    .collect(),
                preview_linger: super::preview_linger(&config),
                sink_status: shared.sink_status.clone(),
                retention,
            },
        );
        let roller = roll::start(
            config.clone(),
            RollerLinks {
                durable: shared.durable.clone(),
                position: shared.position.clone(),
                release: shared.release.clone(),
                wal_oldest: shared.oldest.clone(),
                finished: finished_tx,
                outbox: outbox_dir,
                initial,
                metrics: shared.metrics.clone(),
                backlog: shared.backlog.clone(),
                shutdown: roller_stop_rx,
                drain: shared.drain.clone(),
                status: shared.roller_status.clone(),
            },
        )
        .with_context(|| format!("starting the roller in data_dir {}", data_dir.display()))?;
        Ok(Self {
            roller: tokio::task::spawn_blocking(move || roller.join()),
            delivery,
            probes,
            roller_stop,
            delivery_stop,
        })
    }

    /// Tells the roller and the probes weir stops (a drain goes on until the
    /// WAL closes); delivery goes on until the roller's files are handed over.
    pub(super) fn stopping(&self) {
        let _ = self.roller_stop.send(true);
    }

    /// Stops this generation for a reload: the roller (its open files stay
    /// in the WAL), then delivery (its files stay in the outbox). `Err` if
    /// the roller had failed.
    pub(super) async fn stop(self) -> Result<(), String> {
        let _ = self.roller_stop.send(true);
        let rolled = match self.roller.await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            _ => Err("roller stopped unexpectedly".to_string()),
        };
        let _ = self.delivery_stop.send(true);
        let _ = self.delivery.await;
        let _ = self.probes.await;
        rolled
    }

    /// Waits for the probes (at shutdown).
    pub(super) async fn probes_done(&mut self) {
        let _ = (&mut self.probes).await;
    }
}
