//! The one owner of the control plane in `rsplb run`: a thread of its own holds the
//! [`Balancer`] (the core's state, the maps, the executor) and carries out every change and
//! read, one at a time, in the order they were asked. The reconciler, the health checks, the
//! configuration file, the neighbour resolver, the maintenance pass and the metrics endpoint
//! each send it a job and await its answer; none of them holds the maps or a lock of its own.
//!
//! A job runs to its end before the next starts, so changes never interleave, and nothing slow
//! runs on this thread: a neighbour that must be resolved is queued to the resolver
//! ([`crate::resolver`]) and its result comes back as a job of its own, so removing a dead
//! element never waits behind resolving others.
//!
//! A job must not ask the owner for another job (it would wait for itself). A job that panics
//! stops the owner: every later request fails with "the control plane has stopped", and the
//! daemon stops (the dataplane keeps forwarding with its last tables), as with any change that
//! left the state unknown.

use std::sync::mpsc;

use anyhow::{Context as _, Result, anyhow};

use super::Balancer;

type Job = Box<dyn FnOnce(&mut Balancer) + Send>;

/// A handle to the owner thread; clones share it. The thread ends when the last handle goes.
#[derive(Clone)]
pub struct Control {
    jobs: mpsc::Sender<Job>,
}

const STOPPED: &str = "the control plane has stopped (a change failed in a way that left its state unknown; see the log)";

impl Control {
    /// Starts the owner thread with `balancer`.
    pub fn start(balancer: Balancer) -> Result<Control> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("rsplb-control".into())
            .spawn(move || {
                let mut b = balancer;
                while let Ok(job) = queue.recv() {
                    job(&mut b);
                }
            })
            .context("starting the control-plane thread")?;
        Ok(Control { jobs })
    }

    /// Runs `f` on the owner thread after the jobs already asked, and returns its result.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Balancer) -> R + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |b| {
                let _ = tx.send(f(b));
            }))
            .map_err(|_| anyhow!(STOPPED))?;
        rx.await.map_err(|_| anyhow!(STOPPED))
    }

    /// [`Control::run`] for a thread outside the async runtime (the neighbour resolver's).
    pub fn run_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Balancer) -> R + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |b| {
                let _ = tx.send(f(b));
            }))
            .map_err(|_| anyhow!(STOPPED))?;
        rx.recv().map_err(|_| anyhow!(STOPPED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Mode, PoolHandle, Vip, VipHash};

    fn balancer() -> Balancer {
        super::super::test_balancer("owner", 251).0
    }

    #[tokio::test]
    async fn jobs_run_one_at_a_time_in_order_and_a_panic_stops_the_owner() {
        let control = Control::start(balancer()).unwrap();
        let pool: PoolHandle = "web".parse().unwrap();
        // Many tasks ask at once: each change sees the one before it complete.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20u16 {
            let (c, pool) = (control.clone(), pool.clone());
            tasks.spawn(async move {
                c.run(move |b| {
                    let vip: Vip = format!("198.18.0.1:{}/tcp", 1000 + i).parse().unwrap();
                    b.add_vip(vip, &pool, Mode::Dsr, None, None, &[], VipHash::Flow)
                        .unwrap();
                    b.list_vips().unwrap().len()
                })
                .await
                .unwrap()
            });
        }
        let mut seen: Vec<usize> = tasks.join_all().await;
        seen.sort();
        assert_eq!(seen, (1..=20).collect::<Vec<_>>());
        // From a plain thread too.
        let c = control.clone();
        let n = std::thread::spawn(move || c.run_blocking(|b| b.list_vips().unwrap().len()))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(n, 20);
        // A job that panics stops the owner; later requests fail with a message, never hang.
        let _ = control.run(|_| panic!("a change went wrong")).await;
        let e = control
            .run(|b| b.list_vips().map(|v| v.len()))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("the control plane has stopped"),
            "{e}"
        );
    }
}
