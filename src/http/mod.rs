//! The HTTP endpoint: `/metrics` (Prometheus text), `/healthz`, `/readyz`.

pub(crate) mod config;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::health::Health;
use crate::metrics::Metrics;

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(
    req: Request<Incoming>,
    metrics: Metrics,
    health: Arc<Health>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "GET only\n".into(),
        ));
    }
    Ok(match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" => match health.liveness() {
            Ok(()) => reply(StatusCode::OK, TEXT, "ok\n".into()),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("unhealthy: {why}\n"),
            ),
        },
        "/readyz" => match health.readiness() {
            Ok(()) => {
                let mut body = "ready\n".to_string();
                for w in health.warnings() {
                    body.push_str(&format!("warning: {w}\n"));
                }
                reply(StatusCode::OK, TEXT, body)
            }
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready: {}\n", why.join("; ")),
            ),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /metrics, /healthz, /readyz\n".into(),
        ),
    })
}

/// How often the WAL folder is probed for `/readyz`.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves until shutdown; probes the WAL folder in the background, so a
/// probe request never waits on the disk.
pub(crate) async fn run(
    listener: TcpListener,
    metrics: Metrics,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let prober = {
        let health = health.clone();
        let mut sd = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let h = health.clone();
                let _ = tokio::task::spawn_blocking(move || h.probe_wal_dir()).await;
                tokio::select! {
                    _ = tokio::time::sleep(PROBE_EVERY) => {}
                    _ = sd.wait_for(|s| *s) => return,
                }
            }
        })
    };
    let _prober = AbortOnDrop(prober);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (metrics, health) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, metrics.clone(), health.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Stops a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
