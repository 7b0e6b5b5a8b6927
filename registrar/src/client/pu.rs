//! The pool user side of ASAP (RFC 5352 3.6-3.8): handle resolution with a PU-side cache,
//! selection among the cached elements, and Endpoint Unreachable reports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::message::AsapMessage;
use crate::types::{CauseCode, PeId, Policy, PoolElement, PoolHandle};

use super::{
    ClientConfig, ClientError, RegistrarConnection, RegistrarTable, is_registrar_failure, nonzero,
};

/// The PU-side cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Oldest answer [`PoolUser::resolve`] and [`PoolUser::select`] use before asking again
    /// (RFC 5352 `stale.cache.value`). Default 1 s: registrars drop a silent element in well
    /// under a second, so an older answer may name elements that are gone. Zero = always ask.
    pub stale_after: Duration,
    /// Elements asked for per resolution (Handle Resolution Option); `None` = the registrar's
    /// default.
    pub items: Option<u32>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(1),
            items: None,
        }
    }
}

/// One handle resolution's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub pool_handle: PoolHandle,
    /// The pool's policy as the registrar reported it.
    pub policy: Option<Policy>,
    /// The elements, in the registrar's selection order.
    pub elements: Vec<PoolElement>,
    /// The registrar that answered.
    pub registrar: SocketAddr,
    /// When the answer arrived.
    pub fetched_at: Instant,
}

impl Resolution {
    pub fn age(&self) -> Duration {
        self.fetched_at.elapsed()
    }
}

struct CacheEntry {
    resolution: Resolution,
    /// Round-robin cursor over the cached elements.
    next: usize,
}

struct Inner {
    conn: Option<RegistrarConnection>,
    last_lost: Option<SocketAddr>,
    cache: HashMap<PoolHandle, CacheEntry>,
    rng: StdRng,
}

/// A pool user: resolves pool handles at a registrar and caches the answers.
pub struct PoolUser {
    table: RegistrarTable,
    cache_config: CacheConfig,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for PoolUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolUser")
            .field("table", &self.table)
            .field("cache", &self.cache_config)
            .finish()
    }
}

impl PoolUser {
    /// Must run inside a tokio runtime when announces are configured.
    pub fn new(client: ClientConfig, cache_config: CacheConfig) -> Result<Self, ClientError> {
        Ok(Self {
            table: RegistrarTable::new(client)?,
            cache_config,
            inner: Mutex::new(Inner {
                conn: None,
                last_lost: None,
                cache: HashMap::new(),
                rng: StdRng::from_os_rng(),
            }),
        })
    }

    /// The pool's elements: from the cache when the cached answer is younger than
    /// [`CacheConfig::stale_after`] and not emptied by unreachable reports, else asked anew.
    pub async fn resolve(&self, pool: &PoolHandle) -> Result<Resolution, ClientError> {
        let mut inner = self.inner.lock().await;
        if let Some(entry) = inner.cache.get(pool)
            && self.is_fresh(&entry.resolution)
        {
            return Ok(entry.resolution.clone());
        }
        self.refresh(&mut inner, pool, self.cache_config.items)
            .await
    }

    /// Asks the registrar now (ignoring the cache) for up to `items` elements (`None` = the
    /// registrar's default, `Some(u32::MAX)` = all) and caches the answer.
    pub async fn resolve_fresh(
        &self,
        pool: &PoolHandle,
        items: Option<u32>,
    ) -> Result<Resolution, ClientError> {
        let mut inner = self.inner.lock().await;
        self.refresh(&mut inner, pool, items).await
    }

    /// The cached answer for a pool, fresh or not.
    pub async fn cached(&self, pool: &PoolHandle) -> Option<Resolution> {
        self.inner
            .lock()
            .await
            .cache
            .get(pool)
            .map(|e| e.resolution.clone())
    }

    /// Forgets the cached answer for a pool.
    pub async fn invalidate(&self, pool: &PoolHandle) {
        self.inner.lock().await.cache.remove(pool);
    }

    /// One element to use, chosen among the cached ones (refreshed when stale) by the pool's
    /// policy: the best priority, or the least load, ties and plain round robin taken in turn;
    /// weighted policies at random in proportion to the weight; random policies at random.
    pub async fn select(&self, pool: &PoolHandle) -> Result<PoolElement, ClientError> {
        let mut inner = self.inner.lock().await;
        let fresh = inner
            .cache
            .get(pool)
            .is_some_and(|e| self.is_fresh(&e.resolution));
        if !fresh {
            self.refresh(&mut inner, pool, self.cache_config.items)
                .await?;
        }
        let Inner { cache, rng, .. } = &mut *inner;
        let entry = cache
            .get_mut(pool)
            .ok_or_else(|| ClientError::UnknownPool(pool.clone()))?;
        choose(entry, rng).ok_or_else(|| ClientError::UnknownPool(pool.clone()))
    }

    /// Reports an element the PU could not reach (ENDPOINT_UNREACHABLE; the registrar removes it
    /// after enough reports) and drops it from the cache at once.
    pub async fn report_unreachable(&self, pool: &PoolHandle, id: PeId) -> Result<(), ClientError> {
        let mut inner = self.inner.lock().await;
        if let Some(entry) = inner.cache.get_mut(pool) {
            entry.resolution.elements.retain(|e| e.id != id);
        }
        let msg = AsapMessage::EndpointUnreachable {
            pool_handle: pool.clone(),
            id,
        };
        let attempts = self.table.config().request_attempts.max(1);
        let mut last = None;
        for _ in 0..attempts {
            let conn = match self.connection(&mut inner).await {
                Ok(c) => c,
                Err(e) => return Err(e),
            };
            match conn.stream.send(&msg).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    inner.last_lost = inner.conn.take().map(|c| c.addr);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(ClientError::Stopped))
    }

    fn is_fresh(&self, r: &Resolution) -> bool {
        !r.elements.is_empty() && r.age() < self.cache_config.stale_after
    }

    async fn connection<'a>(
        &self,
        inner: &'a mut Inner,
    ) -> Result<&'a mut RegistrarConnection, ClientError> {
        if inner.conn.is_none() {
            inner.conn = Some(self.table.hunt(inner.last_lost).await?);
        }
        inner.conn.as_mut().ok_or(ClientError::Stopped)
    }

    async fn refresh(
        &self,
        inner: &mut Inner,
        pool: &PoolHandle,
        items: Option<u32>,
    ) -> Result<Resolution, ClientError> {
        let attempts = self.table.config().request_attempts.max(1);
        let mut last_err = None;
        for _ in 0..attempts {
            match self.ask(inner, pool, items).await {
                Ok(resolution) => {
                    inner.cache.insert(
                        pool.clone(),
                        CacheEntry {
                            resolution: resolution.clone(),
                            next: 0,
                        },
                    );
                    return Ok(resolution);
                }
                Err(e) if is_registrar_failure(&e) => {
                    log::debug!("handle resolution of {pool}: {e}; trying another registrar");
                    inner.last_lost = inner.conn.take().map(|c| c.addr);
                    last_err = Some(e);
                }
                Err(e) => {
                    if matches!(e, ClientError::UnknownPool(_)) {
                        inner.cache.remove(pool);
                    }
                    return Err(e);
                }
            }
        }
        Err(last_err.unwrap_or(ClientError::Stopped))
    }

    async fn ask(
        &self,
        inner: &mut Inner,
        pool: &PoolHandle,
        items: Option<u32>,
    ) -> Result<Resolution, ClientError> {
        let timeout = nonzero(self.table.config().request_timeout);
        let conn = self.connection(inner).await?;
        let registrar = conn.addr;
        conn.stream
            .send(&AsapMessage::HandleResolution {
                pool_handle: pool.clone(),
                items,
            })
            .await?;
        let deadline = Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, conn.stream.recv())
                .await
                .map_err(|_| ClientError::Timeout {
                    what: "handle resolution",
                    registrar,
                    after: timeout,
                })??;
            match msg {
                AsapMessage::HandleResolutionResponse {
                    pool_handle,
                    policy,
                    elements,
                    error,
                } if pool_handle == *pool => {
                    let causes = error.unwrap_or_default();
                    if causes
                        .iter()
                        .any(|c| c.code == CauseCode::UnknownPoolHandle)
                        || (causes.is_empty() && elements.is_empty())
                    {
                        return Err(ClientError::UnknownPool(pool.clone()));
                    }
                    if !causes.is_empty() {
                        return Err(ClientError::Registrar {
                            pool: pool.clone(),
                            causes,
                        });
                    }
                    return Ok(Resolution {
                        pool_handle,
                        policy,
                        elements,
                        registrar,
                        fetched_at: Instant::now(),
                    });
                }
                AsapMessage::Error { causes } => {
                    return Err(ClientError::Registrar {
                        pool: pool.clone(),
                        causes,
                    });
                }
                other => log::debug!(
                    "ignoring {:#04x} while waiting for a handle resolution response",
                    other.type_code()
                ),
            }
        }
    }
}

/// Picks one cached element per its policy (see [`PoolUser::select`]).
fn choose(entry: &mut CacheEntry, rng: &mut impl Rng) -> Option<PoolElement> {
    let elements = &entry.resolution.elements;
    let first = elements.first()?;
    // Lower rank = better.
    let rank: Option<fn(&PoolElement) -> i64> = match &first.policy {
        Policy::Priority { .. } => Some(|e| match e.policy {
            Policy::Priority { priority } => -i64::from(priority),
            _ => 0,
        }),
        p if p.load().is_some() => Some(|e| e.policy.load().map_or(i64::MAX, i64::from)),
        Policy::WeightedRandom { .. }
        | Policy::WeightedRoundRobin { .. }
        | Policy::WeightedRandomDpf { .. } => {
            let weights: Vec<u64> = elements
                .iter()
                .map(|e| u64::from(weight_of(&e.policy).max(1)))
                .collect();
            let total: u64 = weights.iter().sum();
            let mut pick = rng.random_range(0..total);
            for (e, w) in elements.iter().zip(weights) {
                if pick < w {
                    return Some(e.clone());
                }
                pick -= w;
            }
            return elements.last().cloned();
        }
        Policy::Random => return Some(elements[rng.random_range(0..elements.len())].clone()),
        _ => None,
    };
    // Round robin over the best-ranked elements (all of them when there is no rank).
    let candidates: Vec<usize> = match &rank {
        Some(rank) => {
            let best = elements.iter().map(rank).min()?;
            (0..elements.len())
                .filter(|&i| rank(&elements[i]) == best)
                .collect()
        }
        None => (0..elements.len()).collect(),
    };
    let pick = candidates[entry.next % candidates.len()];
    entry.next = entry.next.wrapping_add(1);
    Some(elements[pick].clone())
}

fn weight_of(p: &Policy) -> u32 {
    match p {
        Policy::WeightedRandom { weight }
        | Policy::WeightedRoundRobin { weight }
        | Policy::WeightedRandomDpf { weight, .. } => *weight,
        _ => 1,
    }
}
