//! Read any registrar's handlespace over ENRP, as rsplib's `hsdump` does: pose as a peer
//! registrar (a random identifier), say Presence, ask for the peer list and the whole handle
//! table, follow the M flag, and leave. Works with any registrar of the scope, rsplb's or
//! another implementation's, without its admin endpoint.
//!
//! Over TCP a registrar answers a peer at the endpoint the peer's Server Information names, so
//! the dump listens on an ephemeral port of the address its connection leaves from and names
//! that. Over SCTP (rsplib's registrars speak nothing else) the dump binds a one-to-many socket
//! on an ephemeral port of that address, names it, and sends and receives everything there, so
//! its association leaves from the port it names (rsplib checks that). [`dump`] uses SCTP where
//! the kernel has it and falls back to TCP. The registrar briefly lists the dump as a peer (it
//! owns no element, so it is forgotten once silent), as rsplib's registrars list past `hsdump`
//! runs.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::message::{EnrpBody, EnrpMessage};
use crate::types::{
    PoolElement, PoolHandle, RegistrarId, ServerInformation, TransportAddress, TransportUse,
};
use crate::wire;

/// What a registrar told about its handlespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrpDump {
    /// The registrar's identifier (from its messages).
    pub registrar: RegistrarId,
    /// The PE checksum of its own elements, from its Presence (if one came).
    pub checksum: Option<u16>,
    /// Its peers (List Response).
    pub peers: Vec<ServerInformation>,
    /// Every pool with its elements (home registrar, addresses, policy), in the order sent.
    pub pools: Vec<(PoolHandle, Vec<PoolElement>)>,
}

/// How [`dump_with`] reaches the registrar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpTransport {
    /// SCTP where the kernel has it and the registrar answers over it, else TCP.
    Auto,
    Sctp,
    Tcp,
}

/// Dump the handlespace of the registrar whose ENRP endpoint is `addr`, over SCTP where this
/// host has it (TCP otherwise, or when no SCTP answer comes).
pub async fn dump(addr: SocketAddr, timeout: Duration) -> anyhow::Result<EnrpDump> {
    dump_with(addr, timeout, DumpTransport::Auto).await
}

/// [`dump`] over a chosen transport. ENRP drops what a broken connection held (its audits
/// repair that between registrars), so a dump that stops getting answers starts over as a new
/// peer, until `timeout` has passed.
pub async fn dump_with(
    addr: SocketAddr,
    timeout: Duration,
    transport: DumpTransport,
) -> anyhow::Result<EnrpDump> {
    let sctp = match transport {
        DumpTransport::Tcp => false,
        DumpTransport::Sctp => true,
        DumpTransport::Auto => crate::sctp::supported().is_ok(),
    };
    if sctp {
        let budget = if transport == DumpTransport::Auto {
            timeout / 2
        } else {
            timeout
        };
        match retry(addr, budget, true).await {
            Ok(d) => return Ok(d),
            Err(e) if transport == DumpTransport::Sctp => return Err(e),
            Err(e) => log::debug!("ENRP dump of {addr} over SCTP: {e:#}; trying TCP"),
        }
        return retry(addr, timeout - budget, false).await;
    }
    retry(addr, timeout, false).await
}

async fn retry(addr: SocketAddr, timeout: Duration, sctp: bool) -> anyhow::Result<EnrpDump> {
    let deadline = Instant::now() + timeout;
    let attempt = (timeout / 3).clamp(Duration::from_millis(500), Duration::from_secs(3));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let once = if sctp {
            dump_once_sctp(addr, attempt.min(left)).await
        } else {
            dump_once(addr, attempt.min(left)).await
        };
        match once {
            Ok(d) => return Ok(d),
            Err(e) if Instant::now() + Duration::from_millis(100) >= deadline => return Err(e),
            Err(e) => log::debug!("ENRP dump of {addr}: {e:#}; starting over"),
        }
    }
}

async fn dump_once(addr: SocketAddr, timeout: Duration) -> anyhow::Result<EnrpDump> {
    use anyhow::{Context as _, bail};
    let deadline = Instant::now() + timeout;
    let out = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .context("timed out")
        .and_then(|r| r.context("connecting"))
        .with_context(|| format!("ENRP at {addr}"))?;
    let local = out.local_addr()?;
    let listener = TcpListener::bind(SocketAddr::new(local.ip(), 0)).await?;
    let me = new_id();
    let info = ServerInformation {
        id: me,
        transport: TransportAddress::Tcp {
            port: listener.local_addr()?.port(),
            transport_use: TransportUse::DataOnly,
            addr: local.ip(),
        },
    };
    let (rd_out, mut wr) = out.into_split();
    let mut c = Collector::new(me);
    wr.write_all(&c.hello(info)?.concat()).await?;

    // Answers come on the registrar's own connection to our listener (rsplb), or on ours. Other
    // registrars of the scope that hear of this "peer" may call too: every connection is read,
    // and only the target's answers count (it alone was asked, so the first List or Handle
    // Table Response names it).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
    let mut readers = tokio::task::JoinSet::new();
    readers.spawn(read_all(rd_out, tx.clone()));
    while !c.done() {
        let msg = tokio::select! {
            a = listener.accept() => {
                if let Ok((s, _)) = a
                    && readers.len() < 64
                {
                    // Keep our write half open: dropping it would send a FIN, and a registrar
                    // ends a connection whose peer has closed it, losing what it had queued.
                    let (rd, wr) = s.into_split();
                    let tx = tx.clone();
                    readers.spawn(async move {
                        read_all(rd, tx).await;
                        drop(wr);
                    });
                }
                continue;
            }
            m = rx.recv() => match m {
                Some(m) => m,
                None => continue,
            },
            _ = tokio::time::sleep_until(deadline) => {
                bail!("ENRP at {addr}: no complete answer within {timeout:?} ({})", c.progress());
            }
        };
        if let Some(target) = c.take(&msg, addr)? {
            wr.write_all(&c.more(target)?).await?;
        }
    }
    // The target's Presence (asked for with the R flag) usually came before its answers; give a
    // late one a moment.
    let late = Instant::now() + Duration::from_millis(200).min(timeout);
    while !c.has_target_presence() {
        match tokio::time::timeout_at(late, rx.recv()).await {
            Ok(Some(m)) => {
                c.take(&m, addr)?;
            }
            _ => break,
        }
    }
    let result = c.finish();
    readers.abort_all();
    let _ = wr.shutdown().await;
    Ok(result)
}

/// Over SCTP: one one-to-many socket on an ephemeral port of the address towards `addr`, named
/// in the Presence, carries everything both ways.
async fn dump_once_sctp(addr: SocketAddr, timeout: Duration) -> anyhow::Result<EnrpDump> {
    use anyhow::{Context as _, bail};
    let deadline = Instant::now() + timeout;
    // The local address towards the registrar (no datagram is sent).
    let probe = std::net::UdpSocket::bind(SocketAddr::new(
        if addr.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        },
        0,
    ))?;
    probe.connect(addr).context("no route to the registrar")?;
    let local = probe.local_addr()?.ip();
    drop(probe);
    let ep = crate::sctp::SctpEndpoint::bind(
        &[SocketAddr::new(local, 0)],
        crate::sctp::PPID_ENRP,
        65_535,
    )
    .with_context(|| format!("ENRP over SCTP from {local}"))?;
    let me = new_id();
    let info = ServerInformation {
        id: me,
        transport: TransportAddress::Sctp {
            port: ep.local_addr().port(),
            transport_use: TransportUse::DataOnly,
            addrs: vec![local],
        },
    };
    let mut c = Collector::new(me);
    for m in c.hello(info)? {
        tokio::time::timeout_at(deadline, ep.send_to(&m, addr))
            .await
            .context("timed out")
            .and_then(|r| r.context("sending"))
            .with_context(|| format!("ENRP over SCTP at {addr}"))?;
    }
    let mut late = None;
    loop {
        if c.done() && late.is_none() {
            // The target's Presence usually came before its answers; give a late one a moment.
            late = Some(Instant::now() + Duration::from_millis(200).min(timeout));
        }
        if c.done() && c.has_target_presence() {
            break;
        }
        let until = late.unwrap_or(deadline);
        let unit = match tokio::time::timeout_at(until, ep.recv()).await {
            Ok(r) => r?,
            Err(_) if late.is_some() => break,
            Err(_) => {
                bail!(
                    "ENRP over SCTP at {addr}: no complete answer within {timeout:?} ({})",
                    c.progress()
                )
            }
        };
        match unit.incoming {
            crate::sctp::Incoming::Message { ppid, bytes, .. }
                if ppid == crate::sctp::PPID_ENRP =>
            {
                if let Some(target) = c.take(&bytes, addr)? {
                    ep.send_assoc(&c.more(target)?, unit.assoc).await?;
                }
            }
            crate::sctp::Incoming::Notification(crate::sctp::Notification::AssocChange {
                state: crate::sctp::AssocState::CantStartAssoc,
                ..
            }) => bail!("ENRP over SCTP at {addr}: no association (nothing listens there?)"),
            _ => {}
        }
    }
    let _ = ep.abort(0).await;
    Ok(c.finish())
}

/// What the target said, gathered from its messages whichever way they came.
struct Collector {
    me: RegistrarId,
    result: EnrpDump,
    checksums: Vec<(RegistrarId, u16)>,
    have_list: bool,
    have_table: bool,
    elements: usize,
}

impl Collector {
    fn new(me: RegistrarId) -> Self {
        Self {
            me,
            result: EnrpDump {
                registrar: RegistrarId(0),
                checksum: None,
                peers: Vec::new(),
                pools: Vec::new(),
            },
            checksums: Vec::new(),
            have_list: false,
            have_table: false,
            elements: 0,
        }
    }

    fn encode(&self, receiver: RegistrarId, body: EnrpBody) -> anyhow::Result<Vec<u8>> {
        Ok(wire::encode_enrp(&EnrpMessage {
            sender: self.me,
            receiver,
            body,
        })?)
    }

    /// Presence (asking for one back), List Request, Handle Table Request.
    fn hello(&self, info: ServerInformation) -> anyhow::Result<Vec<Vec<u8>>> {
        Ok(vec![
            self.encode(
                RegistrarId(0),
                EnrpBody::Presence {
                    reply_required: true,
                    checksum: wire_checksum_of_nothing(),
                    info: Some(info),
                },
            )?,
            self.encode(RegistrarId(0), EnrpBody::ListRequest)?,
            self.encode(
                RegistrarId(0),
                EnrpBody::HandleTableRequest {
                    own_children_only: false,
                },
            )?,
        ])
    }

    /// The next Handle Table Request (after a response with the M flag).
    fn more(&self, target: RegistrarId) -> anyhow::Result<Vec<u8>> {
        self.encode(
            target,
            EnrpBody::HandleTableRequest {
                own_children_only: false,
            },
        )
    }

    fn done(&self) -> bool {
        self.have_list && self.have_table
    }

    fn has_target_presence(&self) -> bool {
        self.checksums
            .iter()
            .any(|(r, _)| *r == self.result.registrar)
    }

    fn progress(&self) -> String {
        format!(
            "{} pool(s), {} element(s) so far; list {}, table {}",
            self.result.pools.len(),
            self.elements,
            if self.have_list {
                "received"
            } else {
                "missing"
            },
            if self.have_table {
                "complete"
            } else {
                "incomplete"
            }
        )
    }

    /// Takes one message. Other registrars of the scope that hear of this "peer" may call too:
    /// only the target's answers count (it alone was asked, so the first List or Handle Table
    /// Response names it). Returns the target when it has more of its table to send.
    fn take(&mut self, msg: &[u8], addr: SocketAddr) -> anyhow::Result<Option<RegistrarId>> {
        let Ok(decoded) = wire::decode_enrp(msg) else {
            return Ok(None);
        };
        let m = decoded.message;
        if m.receiver != self.me && m.receiver.0 != 0 {
            return Ok(None);
        }
        let answer = matches!(
            m.body,
            EnrpBody::ListResponse { .. } | EnrpBody::HandleTableResponse { .. }
        );
        if answer && self.result.registrar.0 == 0 {
            self.result.registrar = m.sender;
        }
        if let EnrpBody::Presence { checksum, .. } = m.body {
            self.checksums.push((m.sender, checksum));
            return Ok(None);
        }
        if !answer || m.sender != self.result.registrar {
            return Ok(None);
        }
        match m.body {
            EnrpBody::ListResponse { servers, .. } => {
                self.result.peers = servers.into_iter().filter(|s| s.id != self.me).collect();
                self.have_list = true;
            }
            EnrpBody::HandleTableResponse {
                reject,
                more,
                pools,
            } => {
                if reject {
                    anyhow::bail!("ENRP at {addr}: the registrar refused its handle table");
                }
                for (h, els) in pools {
                    self.elements += els.len();
                    match self.result.pools.iter_mut().find(|(p, _)| *p == h) {
                        Some((_, v)) => v.extend(els),
                        None => self.result.pools.push((h, els)),
                    }
                }
                if more {
                    return Ok(Some(m.sender));
                }
                self.have_table = true;
            }
            _ => {}
        }
        Ok(None)
    }

    fn finish(mut self) -> EnrpDump {
        let target = self.result.registrar;
        self.result.checksum = self
            .checksums
            .iter()
            .rev()
            .find(|(r, _)| *r == target)
            .map(|(_, c)| *c);
        self.result
    }
}

/// A random registrar identifier for the dump (never 0, which means "none").
fn new_id() -> RegistrarId {
    loop {
        let id: u32 = rand::random();
        if id != 0 {
            return RegistrarId(id);
        }
    }
}

/// The checksum of no elements (the dump owns none).
fn wire_checksum_of_nothing() -> u16 {
    crate::handlespace::compute_checksum(std::iter::empty())
}

/// Every framed ENRP message of one connection (at most 64 KiB each) into `tx`, until the
/// connection ends or stops making sense.
async fn read_all(mut r: tokio::net::tcp::OwnedReadHalf, tx: tokio::sync::mpsc::Sender<Vec<u8>>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match wire::frame_length(&buf, 65_535) {
            Ok(Some(len)) if buf.len() >= len => {
                let rest = buf.split_off(len);
                let m = std::mem::replace(&mut buf, rest);
                if tx.send(m).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(_) => {}
            Err(_) => return,
        }
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
