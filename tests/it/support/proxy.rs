//! A TCP proxy the test controls (cut, slow, heal).
use std::time::Duration;

/// A TCP proxy the test controls, in front of a real server: `cut` drops every open connection
/// and refuses new ones (the server behind it looks dead), `slow` delays every chunk of traffic
/// in both directions (a slow or hung server behind a live socket), `heal` undoes both.
pub struct FaultProxy {
    pub port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: &str) -> FaultProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let (d, c, delay, target) = (
            down.clone(),
            conns.clone(),
            delay_ms.clone(),
            target.to_string(),
        );
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (target, delay) = (target.clone(), delay.clone());
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&target).await {
                        let (ri, wi) = inbound.into_split();
                        let (ro, wo) = outbound.into_split();
                        tokio::join!(Self::pump(ri, wo, delay.clone()), Self::pump(ro, wi, delay));
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        FaultProxy {
            port,
            down,
            delay_ms,
            conns,
            accept,
        }
    }

    /// Copy one direction, holding each chunk for the current delay before passing it on.
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let delay = delay_ms.load(std::sync::atomic::Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }

    pub fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Delay every chunk of traffic through the proxy by `ms` from now on.
    pub fn slow(&self, ms: u64) {
        self.delay_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
        self.delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}
