//! Memory hygiene of secret resolution: a global allocator scans every block freed while the
//! test is armed for a canary secret, and the test fails if any freed block still holds it.
//! Covers the embedded vault and the environment backend, from the backend's read to the
//! dropped `SecretString`. (This file is its own test binary, so the allocator affects only it.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use airlock::secrets::embedded::EmbeddedVault;
use airlock::secrets::env::{EnvConfig, EnvStore};
use airlock::secrets::{SecretStore, SecretString};

const CANARY: &[u8] = b"Zq7-hygiene-canary-4Kp9";

static ARMED: AtomicBool = AtomicBool::new(false);
static FOUND: AtomicUsize = AtomicUsize::new(0);
/// Tests share the allocator's counters: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct ScanningAllocator;

unsafe impl GlobalAlloc for ScanningAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) && layout.size() >= CANARY.len() {
            // No allocation in here: a plain scan of the block about to be freed.
            let block = std::slice::from_raw_parts(ptr, layout.size());
            if block.windows(CANARY.len()).any(|w| w == CANARY) {
                FOUND.fetch_add(1, Ordering::Relaxed);
            }
        }
        System.dealloc(ptr, layout)
    }
    // `realloc` is left to the default (alloc, copy, dealloc), so a grown buffer's old block
    // is scanned too.
}

#[global_allocator]
static GLOBAL: ScanningAllocator = ScanningAllocator;

fn canary() -> String {
    String::from_utf8(CANARY.to_vec()).unwrap()
}

/// Runs `f` armed and returns how many freed blocks held the canary.
fn armed<F: FnOnce()>(f: F) -> usize {
    FOUND.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    FOUND.load(Ordering::SeqCst)
}

#[test]
fn the_scanner_catches_a_careless_copy() {
    let _g = SERIAL.lock().unwrap();
    // the detector itself works: a plain String freed with the canary is found
    let found = armed(|| {
        let s = canary();
        drop(std::hint::black_box(s));
    });
    assert!(found >= 1, "the allocator must see an unzeroized copy");
}

#[test]
fn embedded_vault_resolution_leaves_no_copy_in_freed_memory() {
    let _g = SERIAL.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vault = EmbeddedVault::new(dir.path().join("vault"), dir.path().join("key"));
    vault.put("hyg", &SecretString::new(canary())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let found = armed(|| {
        let secret = rt.block_on(vault.resolve("hyg")).unwrap();
        assert_eq!(secret.expose().as_bytes(), CANARY);
        drop(secret);
    });
    assert_eq!(found, 0, "freed blocks held the secret");
}

#[test]
fn env_resolution_leaves_no_copy_in_freed_memory() {
    let _g = SERIAL.lock().unwrap();
    std::env::set_var("AIRLOCK_SECRET_HYGIENE", canary());
    let store = EnvStore::new(&EnvConfig {
        prefix: "AIRLOCK_SECRET_".into(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let found = armed(|| {
        let secret = rt
            .block_on(store.resolve("AIRLOCK_SECRET_HYGIENE"))
            .unwrap();
        assert_eq!(secret.expose().as_bytes(), CANARY);
        drop(secret);
    });
    assert_eq!(found, 0, "freed blocks held the secret");
}
