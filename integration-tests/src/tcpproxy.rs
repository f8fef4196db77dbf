//! A TCP proxy that can take a server away: `down` cuts every connection
//! through it and turns new ones away until `up`, as a PostgreSQL stopped
//! with `-m immediate` and started again does, while the real server
//! behind it (shared by other tests) is left alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

struct Shared {
    upstream: String,
    up: AtomicBool,
    /// Bumped by `down`: every forwarding task ends.
    cut: watch::Sender<u64>,
}

/// A running proxy; stops when dropped.
pub struct TcpProxy {
    addr: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TcpProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`
    /// (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let (cut, _) = watch::channel(0);
        let shared =
            Arc::new(Shared { upstream: upstream.to_string(), up: AtomicBool::new(true), cut });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Self { addr, shared, task }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Cuts every connection and turns new ones away.
    pub fn down(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// Forwards again.
    pub fn up(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        if !shared.up.load(Ordering::SeqCst) {
            // Closed at once: the client sees its connection fail.
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, shared.clone()));
    }
}

async fn forward(mut client: TcpStream, shared: Arc<Shared>) {
    let mut cut = shared.cut.subscribe();
    let Ok(mut server) = TcpStream::connect(&shared.upstream).await else { return };
    tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.changed() => {}
    }
}
