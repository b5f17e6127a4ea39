//! Allocator tuning for training processes (the `train` binary and the bench).

/// Training allocates and frees tensors of hundreds of MB every step. glibc serves each with
/// a fresh `mmap`, so the kernel zero-fills the same amount again every step: that cost
/// more than the arithmetic. Keeping large blocks on the heap avoids it (measured in the
/// README; the same as `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=... MALLOC_TOP_PAD_=...`).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning and is called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 512 << 20);
    }
}
