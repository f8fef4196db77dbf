//! A TCP proxy that can take a server away: `down` cuts every connection
//! through it and turns new ones away until `up`, as a PostgreSQL stopped
//! with `-m immediate` and started again does, while the real server
//! behind it (shared by other tests) is left alone. `stall` holds every
//! byte instead, connections open, as a hung server or a network that
//! drops packets does: calls neither fail nor answer until `resume`.
//! `sever` cuts every client off while the server side stays open: what
//! the server was sent runs to its end (a commit happens), and its answers
//! go nowhere, as when a connection dies after its request left.

use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

struct Shared {
    upstream: String,
    up: AtomicBool,
    /// Bumped by `down`: every forwarding task ends.
    cut: watch::Sender<u64>,
    /// While true, bytes read are held, not forwarded.
    stalled: watch::Sender<bool>,
    /// Bumped by `sever`: clients are cut off, servers are not.
    severed: watch::Sender<u64>,
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
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            up: AtomicBool::new(true),
            cut,
            stalled: watch::Sender::new(false),
            severed: watch::Sender::new(0),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Self { addr, shared, task }
    }

    /// A proxy in front of the PostgreSQL server of `database_url`, and
    /// the same database's URL through it.
    pub async fn in_front_of_database(database_url: &str) -> (Self, String) {
        use sqlx::ConnectOptions as _;
        let options = sqlx::postgres::PgConnectOptions::from_str(database_url)
            .expect("a PostgreSQL database url");
        let proxy = Self::start(&format!("{}:{}", options.get_host(), options.get_port())).await;
        let port: u16 = proxy.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        let url = options.host("127.0.0.1").port(port).to_url_lossy().to_string();
        (proxy, url)
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

    /// Holds every byte, both ways, on every connection (new ones too).
    pub fn stall(&self) {
        self.shared.stalled.send_replace(true);
    }

    /// Cuts every client off its connection; the server ends of them stay
    /// open, and what the servers send is read and dropped. New
    /// connections are forwarded as before.
    pub fn sever(&self) {
        self.shared.severed.send_modify(|n| *n += 1);
    }

    /// Forwards what was held, and the rest.
    pub fn resume(&self) {
        self.shared.stalled.send_replace(false);
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

async fn forward(client: TcpStream, shared: Arc<Shared>) {
    let mut cut = shared.cut.subscribe();
    let mut severed = shared.severed.subscribe();
    let Ok(server) = TcpStream::connect(&shared.upstream).await else { return };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let severed = {
        let both = async {
            tokio::join!(
                pipe(&mut from_client, &mut to_server, shared.stalled.subscribe()),
                pipe(&mut from_server, &mut to_client, shared.stalled.subscribe()),
            )
        };
        // A cut wins over bytes a `resume` right after it would let through.
        tokio::select! {
            biased;
            _ = cut.changed() => false,
            _ = severed.changed() => true,
            _ = both => false,
        }
    };
    drop((from_client, to_client));
    if severed {
        // The server finishes what it was sent; its answers go nowhere.
        let _ = tokio::io::copy(&mut from_server, &mut tokio::io::sink()).await;
    }
    drop(to_server);
}

/// Copies one direction until end of stream, holding bytes while stalled.
async fn pipe(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        if stalled.wait_for(|stalled| !*stalled).await.is_err() {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
    }
}
