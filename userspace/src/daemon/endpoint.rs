//! The one HTTP server of `rsplb run` (`--metrics ADDR:PORT`), on the registrar's hyper stack
//! ([`rsplb_registrar::shell::http`]):
//! - `GET /metrics`: the metrics of [`super::metrics`] (OpenMetrics text);
//! - with an embedded registrar, its admin paths too: `GET /handlespace`, `/stats`,
//!   `/registrars` (JSON, as the registrar's own admin endpoint serves them).

use crate::control::owner::Control;
use std::{sync::Arc, time::Duration};

use hyper::StatusCode;
use rsplb_registrar::shell::{
    RegistrarControl, admin,
    http::{self, Listener, Request, Response, ServerLimits},
};

use super::metrics;

/// What the endpoint answers from.
#[derive(Clone)]
pub struct Endpoint {
    pub balancer: Control,
    pub registrar: Option<RegistrarControl>,
    pub started_unix_ms: u64,
}

/// How long one exchange may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Endpoint {
    /// Serves until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        let this = Arc::new(self);
        http::serve(
            Listener::Tcp(listener),
            ServerLimits::within(REQUEST_TIMEOUT),
            move |req| {
                let this = this.clone();
                async move { this.answer(req).await }
            },
        )
        .await
    }

    async fn answer(&self, req: Request) -> Response {
        if let Some(refused) = http::only_get(&req) {
            return refused;
        }
        let path = req.uri().path();
        if path == "/metrics" {
            return self.metrics().await;
        }
        match &self.registrar {
            Some(r) => match admin::answer(r.queries(), path).await {
                Some(a) => a,
                None => http::not_found(&format!("/metrics, {}", admin::PATHS)),
            },
            None => http::not_found("/metrics"),
        }
    }

    async fn metrics(&self) -> Response {
        let dataplane = self
            .balancer
            .run(|b| Ok::<_, anyhow::Error>((b.stats()?, b.vip_digests()?, b.list_elements(None)?)))
            .await;
        let (stats, digests, elements) = match dataplane {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return error(format!("{e:#}")),
            Err(e) => return error(e.to_string()),
        };
        let registrar = match &self.registrar {
            Some(r) => {
                let asked = tokio::time::timeout(Duration::from_secs(2), async {
                    (r.stats().await.ok(), r.registrars().await.ok())
                })
                .await;
                match asked {
                    Ok((Some(s), scope)) => Some((s, scope)),
                    _ => None,
                }
            }
            None => None,
        };
        let passes = super::status::reconcile_figures();
        let text = metrics::encode_text(&metrics::Snapshot {
            stats: Some(&stats),
            digests: Some(&digests),
            elements: &elements,
            registrar: registrar.as_ref().map(|(s, scope)| (s, scope.as_ref())),
            daemon: Some(metrics::DaemonFigures {
                start_time_unix_s: self.started_unix_ms as f64 / 1000.0,
                reconcile_passes: passes.passes,
                reconcile_seconds: passes.total_ms / 1000.0,
                reconcile_last_unix_s: passes.last_unix_ms.map(|t| t as f64 / 1000.0),
                reconcile_latency: self
                    .registrar
                    .is_some()
                    .then(|| crate::reconcile::LATENCY.snapshot()),
            }),
        });
        http::answer(StatusCode::OK, metrics::CONTENT_TYPE, text)
    }
}

fn error(e: String) -> Response {
    http::answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        "text/plain; charset=utf-8",
        format!("{e}\n"),
    )
}
