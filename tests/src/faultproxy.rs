//! A loopback TCP proxy that injects network faults at chosen byte offsets: it drops, resets,
//! stalls or truncates connections. It works below HTTP and TLS (it only counts bytes), so the
//! same proxy sits in front of a plain S3 API or an HTTPS tenant endpoint.
//!
//! Each accepted connection takes the next [`Fault`] of the plan (a pass-through once the plan
//! is empty). A fault fires when the byte count in its direction reaches its offset; a fault
//! whose offset is never reached (the connection carried fewer bytes) is not counted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which way the counted bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: the request.
    Request,
    /// Server to client: the response.
    Response,
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// After `at` bytes of the request, close both sides (the server sees a cut request).
    Drop { at: usize },
    /// After `at` bytes in `dir`, reset the client's connection (TCP RST).
    Reset { dir: Direction, at: usize },
    /// After `at` bytes in `dir`, stop forwarding and hold the connection open until the
    /// client gives up (its timeout) or `hold` passes.
    Stall {
        dir: Direction,
        at: usize,
        hold: Duration,
    },
    /// Forward only the first `at` bytes of the response, then close: a truncated answer.
    Truncate { at: usize },
}

impl Fault {
    /// A short label for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Fault::Pass => "pass",
            Fault::Drop { .. } => "drop",
            Fault::Reset { .. } => "reset",
            Fault::Stall { .. } => "stall",
            Fault::Truncate { .. } => "truncate",
        }
    }

    fn trigger(&self) -> Option<(Direction, usize)> {
        match *self {
            Fault::Pass => None,
            Fault::Drop { at } => Some((Direction::Request, at)),
            Fault::Reset { dir, at } | Fault::Stall { dir, at, .. } => Some((dir, at)),
            Fault::Truncate { at } => Some((Direction::Response, at)),
        }
    }
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Faults that fired, by kind: drop, reset, stall, truncate.
    pub dropped: AtomicUsize,
    pub reset: AtomicUsize,
    pub stalled: AtomicUsize,
    pub truncated: AtomicUsize,
}

impl Stats {
    /// Faults that fired.
    pub fn injected(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
            + self.reset.load(Ordering::SeqCst)
            + self.stalled.load(Ordering::SeqCst)
            + self.truncated.load(Ordering::SeqCst)
    }

    fn count(&self, fault: &Fault) {
        let counter = match fault {
            Fault::Pass => return,
            Fault::Drop { .. } => &self.dropped,
            Fault::Reset { .. } => &self.reset,
            Fault::Stall { .. } => &self.stalled,
            Fault::Truncate { .. } => &self.truncated,
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    port: u16,
    plan: Arc<Mutex<VecDeque<Fault>>>,
    stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let plan: Arc<Mutex<VecDeque<Fault>>> = Arc::default();
        let stats: Arc<Stats> = Arc::default();
        let (p, s) = (plan.clone(), stats.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                let fault = p
                    .lock()
                    .expect("plan lock")
                    .pop_front()
                    .unwrap_or(Fault::Pass);
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(client, upstream, fault, &s).await;
                });
            }
        });
        FaultProxy {
            port,
            plan,
            stats,
            task,
        }
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replaces the plan: the next connections take these faults, in order.
    pub fn set_plan(&self, faults: impl IntoIterator<Item = Fault>) {
        let mut plan = self.plan.lock().expect("plan lock");
        plan.clear();
        plan.extend(faults);
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Resets `stream`'s connection: SO_LINGER 0, then close.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    stats: &Stats,
) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    let trigger = fault.trigger();
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut sent = [0usize; 2]; // request, response
    let mut open = [true, true];
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    while open[0] || open[1] {
        let (dir, n) = tokio::select! {
            r = cr.read(&mut up), if open[0] => (Direction::Request, r?),
            r = sr.read(&mut down), if open[1] => (Direction::Response, r?),
        };
        let i = dir as usize;
        if n == 0 {
            open[i] = false;
            match dir {
                Direction::Request => sw.shutdown().await?,
                Direction::Response => cw.shutdown().await?,
            }
            continue;
        }
        let chunk = match dir {
            Direction::Request => &up[..n],
            Direction::Response => &down[..n],
        };
        // Forward up to the fault's offset, then apply it.
        let cut = match trigger {
            Some((d, at)) if d == dir && sent[i] + n >= at => Some(at - sent[i].min(at)),
            _ => None,
        };
        let forward = cut.unwrap_or(n);
        match dir {
            Direction::Request => sw.write_all(&chunk[..forward]).await?,
            Direction::Response => cw.write_all(&chunk[..forward]).await?,
        }
        sent[i] += forward;
        if cut.is_none() {
            continue;
        }
        stats.count(&fault);
        match fault {
            Fault::Reset { .. } => {
                reset(cw.as_ref());
                return Ok(());
            }
            Fault::Stall { hold, .. } => {
                // Hold both sides open, forwarding nothing, until the client hangs up.
                let mut sink = [0u8; 1024];
                let _ = tokio::time::timeout(hold, async {
                    loop {
                        match cr.read(&mut sink).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                })
                .await;
                return Ok(());
            }
            // Drop and truncate: close both connections.
            _ => {
                let _ = cw.shutdown().await;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A small deterministic generator (xorshift64*), so a failing fault schedule can be replayed
/// from its seed.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    /// A random fault: drops and resets anywhere in the first `request_bytes` of a request,
    /// truncations and resets in the first `response_bytes` of a response, and (when
    /// `stall` is set) stalls held for `stall`.
    pub fn fault(
        &mut self,
        request_bytes: usize,
        response_bytes: usize,
        stall: Option<Duration>,
    ) -> Fault {
        let kinds = if stall.is_some() { 5 } else { 4 };
        let req = self.below(request_bytes as u64 + 1) as usize;
        let resp = self.below(response_bytes as u64 + 1) as usize;
        match self.below(kinds) {
            0 => Fault::Drop { at: req },
            1 => Fault::Reset {
                dir: Direction::Request,
                at: req,
            },
            2 => Fault::Reset {
                dir: Direction::Response,
                at: resp,
            },
            3 => Fault::Truncate { at: resp },
            _ => {
                let (dir, at) = if self.below(2) == 0 {
                    (Direction::Request, req)
                } else {
                    (Direction::Response, resp)
                };
                Fault::Stall {
                    dir,
                    at,
                    hold: stall.unwrap_or_default(),
                }
            }
        }
    }
}
