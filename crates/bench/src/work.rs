//! The same work and the same process settings for every measured system: timed steps,
//! generated tokens, CPU threads and glibc's allocator tuning.

use std::ffi::OsStr;
use std::process::Command;

/// Every CPU this process may run on.
pub fn machine_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// What each measuring process does, and with what.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Work {
    /// Timed training steps, after one warm-up step.
    pub steps: usize,
    /// Tokens generated for each generation figure, after one warm-up generation.
    pub gen_tokens: usize,
    /// CPU threads: the process may run on the first `threads` CPUs only, and its thread pool
    /// (rayon's, PyTorch's) has that many threads.
    pub threads: usize,
}

/// glibc's allocator settings that `train::allocator::keep_freed_memory` makes in our
/// processes, as environment variables, so that the reference runs with them too.
pub const ALLOCATOR_ENV: [(&str, &str); 3] = [
    ("MALLOC_MMAP_MAX_", "0"),
    ("MALLOC_TRIM_THRESHOLD_", "1073741824"),
    ("MALLOC_TOP_PAD_", "536870912"),
];

impl Work {
    /// A command for `program` that runs on the first `threads` CPUs with `threads` pool
    /// threads and the allocator settings of [`ALLOCATOR_ENV`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("RAYON_NUM_THREADS", self.threads.to_string())
            .envs(ALLOCATOR_ENV);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            let set = first_cpus(self.threads);
            // SAFETY: sched_setaffinity is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    match libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                });
            }
        }
        cmd
    }
}

/// The first `n` CPUs this process may run on (all of them when it may run on fewer).
#[cfg(target_os = "linux")]
fn first_cpus(n: usize) -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is an empty set; the calls read and write only `allowed`
    // and `set`.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            (0..n.max(1)).for_each(|c| libc::CPU_SET(c, &mut allowed));
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let cpus = (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &allowed));
        for cpu in cpus.take(n.max(1)) {
            libc::CPU_SET(cpu, &mut set);
        }
        set
    }
}
