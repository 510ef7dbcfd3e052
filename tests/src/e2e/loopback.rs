//! A TCP server on loopback for the e2e upstreams: each connection is served on
//! its own thread, and dropping the server stops the accept loop.

use anyhow::Context as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Serves connections until dropped.
pub struct Loopback {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Loopback {
    /// Binds 127.0.0.1 on a free port; `serve` handles one connection.
    pub fn start(
        what: &str,
        serve: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> anyhow::Result<Loopback> {
        let listener =
            TcpListener::bind("127.0.0.1:0").with_context(|| format!("binding {what}"))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(serve);
        let accept = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let serve = Arc::clone(&serve);
                    std::thread::spawn(move || serve(stream));
                }
            })
        };
        Ok(Loopback {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}
