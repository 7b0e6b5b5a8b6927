//! A scripted fake registrar for the client tests: a TCP listener whose connections the test
//! drives message by message, answering per RFC 5352 where the test says so.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use rsplb_registrar::client::AsapStream;
use rsplb_registrar::message::AsapMessage;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bound for every wait in the tests (generous: the machine is shared).
pub const WAIT: Duration = Duration::from_secs(10);

pub struct FakeRegistrar {
    pub addr: SocketAddr,
    conns: mpsc::Receiver<FakeConn>,
    acceptor: JoinHandle<()>,
}

impl Drop for FakeRegistrar {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

pub struct FakeConn {
    stream: AsapStream<TcpStream>,
    first: Option<AsapMessage>,
}

impl FakeRegistrar {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::channel(16);
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                // Connections that send nothing (the losers of a parallel hunt) are dropped
                // here; the test sees only those that speak.
                tokio::spawn(async move {
                    let mut stream = AsapStream::new(stream);
                    if let Ok(Ok(first)) = tokio::time::timeout(WAIT, stream.recv()).await {
                        let _ = tx
                            .send(FakeConn {
                                stream,
                                first: Some(first),
                            })
                            .await;
                    }
                });
            }
        });
        Self {
            addr,
            conns,
            acceptor,
        }
    }

    /// The next connection that sent a message.
    pub async fn accept(&mut self) -> FakeConn {
        tokio::time::timeout(WAIT, self.conns.recv())
            .await
            .expect("a client connects within the bound")
            .expect("acceptor alive")
    }

    /// Whether a connection that speaks arrives within `d`.
    pub async fn accept_within(&mut self, d: Duration) -> Option<FakeConn> {
        tokio::time::timeout(d, self.conns.recv())
            .await
            .ok()
            .flatten()
    }
}

impl FakeConn {
    pub async fn recv(&mut self) -> AsapMessage {
        if let Some(m) = self.first.take() {
            return m;
        }
        tokio::time::timeout(WAIT, self.stream.recv())
            .await
            .expect("a message within the bound")
            .expect("connection open")
    }

    pub async fn send(&mut self, msg: &AsapMessage) {
        self.stream.send(msg).await.unwrap();
    }

    /// Receives a registration and accepts it; returns it.
    pub async fn accept_registration(&mut self) -> AsapMessage {
        let msg = self.recv().await;
        let AsapMessage::Registration {
            pool_handle,
            element,
        } = &msg
        else {
            panic!("expected a registration, got {msg:?}");
        };
        let response = AsapMessage::RegistrationResponse {
            reject: false,
            pool_handle: pool_handle.clone(),
            id: element.id,
            error: None,
        };
        self.send(&response).await;
        msg
    }
}
