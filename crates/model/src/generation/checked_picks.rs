//! How often the CPU decoder's half-precision logits settled a pick, counted over the whole
//! process: every pick first tries the half-precision logits within their bound, and takes
//! the full-precision logits only when the bound leaves the choice open.

use std::sync::atomic::{AtomicU64, Ordering};

static PICKS: AtomicU64 = AtomicU64::new(0);
static FULL_PRECISION: AtomicU64 = AtomicU64::new(0);

/// Picks made by the CPU decoder since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CheckedPicks {
    /// Every pick.
    pub picks: u64,
    /// The picks the half-precision bound left open, made from the full-precision logits.
    pub full_precision: u64,
}

impl CheckedPicks {
    /// The counts so far.
    pub fn now() -> Self {
        Self {
            picks: PICKS.load(Ordering::Relaxed),
            full_precision: FULL_PRECISION.load(Ordering::Relaxed),
        }
    }

    /// The picks made since `earlier`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            picks: self.picks - earlier.picks,
            full_precision: self.full_precision - earlier.full_precision,
        }
    }

    /// Counts one pick, and whether the bound left it open.
    pub(crate) fn count(full_precision: bool) {
        PICKS.fetch_add(1, Ordering::Relaxed);
        if full_precision {
            FULL_PRECISION.fetch_add(1, Ordering::Relaxed);
        }
    }
}
