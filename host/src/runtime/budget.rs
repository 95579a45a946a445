//! The per-run host-memory budget (`limits.host_memory_mb`).
//!
//! The plugin's own memory is bounded by wasmtime (`limits.memory_mb`); this bounds what the
//! *host* holds on the plugin's behalf: rows a driver streamed ahead of the plugin, buffered
//! query results, the page caches of open SQLite files, network sessions, HTTP bodies being
//! read. Each of them reserves its bytes here before it holds them and gives them back when
//! dropped ([`Reservation`]); a reservation that would pass the budget fails, and the host call
//! that needed it fails with a `limit` error naming the limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One run's budget.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    /// The first refused reservation: the run fails with it, whatever the plugin made of the
    /// failed call (a plugin that went on would publish a partial run as complete).
    exceeded: std::sync::Mutex<Option<String>>,
}

/// Bytes held against a budget until dropped.
#[derive(Debug)]
#[must_use = "the bytes are given back when the reservation is dropped"]
pub struct Reservation {
    budget: Option<Arc<MemoryBudget>>,
    bytes: usize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            exceeded: Default::default(),
        })
    }

    /// A budget of `mb` MiB.
    pub fn of_mb(mb: u64) -> Arc<Self> {
        Self::new(usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX))
    }

    /// Reserves `bytes` for `what` (named in the error), or says why not.
    pub fn try_reserve(self: &Arc<Self>, bytes: usize, what: &str) -> Result<Reservation, String> {
        let mut current = self.used.load(Ordering::Relaxed);
        loop {
            let next = current.saturating_add(bytes);
            if next > self.limit {
                let message = format!(
                    "host memory budget exceeded: {what} needs {} KiB, and the host already holds \
                     {} KiB for this run of the {} MiB limits.host_memory_mb allows; read and drop \
                     rows, results and connections sooner, or raise the limit",
                    bytes.div_ceil(1024),
                    current / 1024,
                    self.limit >> 20
                );
                if let Ok(mut e) = self.exceeded.lock() {
                    e.get_or_insert_with(|| message.clone());
                }
                return Err(message);
            }
            match self.used.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    return Ok(Reservation {
                        budget: Some(self.clone()),
                        bytes,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Why a reservation was refused, if one was: the run fails with it.
    pub fn exceeded(&self) -> Option<String> {
        self.exceeded.lock().ok().and_then(|e| e.clone())
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The most bytes reserved at once during the run.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Reservation {
    /// A reservation of nothing.
    pub fn none() -> Self {
        Reservation {
            budget: None,
            bytes: 0,
        }
    }

    /// Adds `more` bytes of `budget` (the one this reservation is of, if any) for `what`, or
    /// says why not (the reservation keeps what it had).
    pub fn grow(
        &mut self,
        budget: &Arc<MemoryBudget>,
        more: usize,
        what: &str,
    ) -> Result<(), String> {
        debug_assert!(self.budget.as_ref().is_none_or(|b| Arc::ptr_eq(b, budget)));
        let mut extra = budget.try_reserve(more, what)?;
        self.budget.get_or_insert_with(|| budget.clone());
        self.bytes += std::mem::take(&mut extra.bytes);
        Ok(())
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(b) = self.budget.take() {
            b.used.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_until_dropped() {
        let b = MemoryBudget::new(1000);
        let a = b.try_reserve(600, "a").unwrap();
        let err = b.try_reserve(500, "rows of x").unwrap_err();
        assert!(
            err.contains("rows of x") && err.contains("limits.host_memory_mb"),
            "{err}"
        );
        let mut c = b.try_reserve(400, "c").unwrap();
        assert_eq!(b.used(), 1000);
        assert!(c.grow(&b, 1, "more").is_err());
        drop(a);
        c.grow(&b, 500, "more").unwrap();
        assert_eq!((b.used(), c.bytes()), (900, 900));
        drop(c);
        assert_eq!(b.used(), 0);
        assert_eq!(b.peak(), 1000);
        assert!(b.exceeded().unwrap().contains("rows of x"));
        let mut n = Reservation::none();
        n.grow(&b, 10, "x").unwrap();
        assert_eq!(b.used(), 10);
        drop(n);
        assert_eq!(b.used(), 0);
    }
}
