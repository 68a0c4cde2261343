//! A cuttable TCP proxy: a network partition between one process and a server, on
//! loopback.
//!
//! [`CutProxy::start`] listens on a fresh loopback port and forwards every connection to
//! `upstream`, byte for byte, in both directions. [`CutProxy::cut`] partitions the link the
//! way a black hole looks to a client:
//!
//! * every connection that is forwarding stops at once in both directions (bytes read but
//!   not yet written are lost); its upstream half is closed, its client half is held open
//!   and silent until the link heals (or the proxy stops), then closed, as a peer that has
//!   forgotten the connection;
//! * new connections are accepted and held without reading or forwarding anything.
//!
//! [`CutProxy::heal`] restores the link: held new connections are then connected upstream and
//! forwarded, with whatever the client sent meanwhile (the kernel kept it, as TCP
//! retransmission would deliver it). Dropping the proxy stops it and closes every
//! connection.
//!
//! The proxy runs on its own thread and runtime, so a test that blocks its own runtime (a
//! child process waited for with `block_in_place`) never stalls the link.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The link's state, as every connection task sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Link {
    /// Partitioned.
    cut: bool,
    /// How many times the link was cut so far.
    cuts: u64,
}

/// A TCP proxy on loopback whose link to its upstream can be cut and healed.
pub struct CutProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    link: watch::Sender<Link>,
    thread: Option<JoinHandle<()>>,
}

impl CutProxy {
    /// Starts a proxy to `upstream` on a fresh loopback port, link up.
    pub fn start(upstream: SocketAddr) -> Result<CutProxy> {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding the proxy's port")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (link, watcher) = watch::channel(Link::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the proxy's runtime")?;
        let thread = std::thread::Builder::new()
            .name(format!("cut-proxy-{}", addr.port()))
            .spawn(move || runtime.block_on(accept_loop(std_listener, upstream, watcher)))
            .context("starting the proxy's thread")?;
        Ok(CutProxy {
            addr,
            upstream,
            link,
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the proxy as an endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server behind the proxy.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Partitions the link (see the module documentation). Idempotent.
    pub fn cut(&self) {
        self.link.send_if_modified(|l| {
            if l.cut {
                return false;
            }
            l.cut = true;
            l.cuts += 1;
            true
        });
    }

    /// Restores the link. Idempotent.
    pub fn heal(&self) {
        self.link
            .send_if_modified(|l| std::mem::replace(&mut l.cut, false));
    }

    /// True while the link is cut.
    pub fn is_cut(&self) -> bool {
        self.link.borrow().cut
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        // Closing the channel ends the accept loop; the runtime's drop then ends every
        // connection task and closes its sockets.
        let (closed, _) = watch::channel(Link::default());
        drop(std::mem::replace(&mut self.link, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections until the proxy is dropped; each one gets its own task.
async fn accept_loop(
    std_listener: std::net::TcpListener,
    upstream: SocketAddr,
    mut watcher: watch::Receiver<Link>,
) {
    let Ok(listener) = TcpListener::from_std(std_listener) else {
        return;
    };
    loop {
        tokio::select! {
            changed = watcher.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    let _ = client.set_nodelay(true);
                    tokio::spawn(serve(client, upstream, watcher.clone()));
                }
            }
        }
    }
}

/// One client connection: held while the link is cut, forwarded while it is up, and
/// closed at the first heal after a cut interrupted its forwarding.
async fn serve(mut client: TcpStream, upstream: SocketAddr, mut watcher: watch::Receiver<Link>) {
    // Held, unread, until the link is up.
    if watcher.wait_for(|l| !l.cut).await.is_err() {
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let cuts = watcher.borrow().cuts;
    let interrupted = tokio::select! {
        biased;
        changed = watcher.wait_for(|l| l.cut || l.cuts != cuts) => changed.is_ok(),
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
    };
    drop(server);
    if interrupted {
        // Silent until the link heals or the proxy stops; then the client half closes.
        let _ = watcher.wait_for(|l| !l.cut).await;
    }
}
