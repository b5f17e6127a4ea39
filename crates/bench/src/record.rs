//! What every bench command prints is also written as JSON to `target/bench/<command>.json`,
//! with the command line, the date and a description of the machine, so that a table in
//! `docs/benchmarks.md` can be checked against the run that printed it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

/// The machine a figure was measured on, as far as the system says.
#[derive(Debug, Serialize)]
struct Machine {
    /// `model name` of the first processor in /proc/cpuinfo.
    cpu: String,
    /// Logical CPUs this process may run on.
    logical_cpus: usize,
    /// The widest SIMD extensions the CPU reports (e.g. `avx512f`, `avx2`, `fma`).
    simd: Vec<String>,
    /// Total memory, in GiB.
    memory_gib: f64,
    /// The operating system (`PRETTY_NAME` of /etc/os-release).
    os: String,
    /// The version of Burn in Cargo.lock.
    burn: String,
}

impl Machine {
    /// Reads the description from /proc, /etc/os-release and Cargo.lock ("unknown" where one
    /// is missing).
    fn describe() -> Self {
        let cpuinfo = read("/proc/cpuinfo");
        let field = |name: &str| {
            cpuinfo.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_owned())
            })
        };
        let flags = field("flags").unwrap_or_default();
        let simd = [
            "avx512f",
            "avx512bw",
            "avx512_fp16",
            "avx2",
            "fma",
            "f16c",
            "neon",
        ]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .map(str::to_owned)
        .collect();
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned());
        Self {
            cpu: field("model name").unwrap_or_else(|| "unknown".into()),
            logical_cpus: crate::work::machine_threads(),
            simd,
            memory_gib: memory_kib.map_or(0.0, |k| (k / 1_048_576.0 * 10.0).round() / 10.0),
            os: os.unwrap_or_else(|| "unknown".into()),
            burn: locked_version(&read("Cargo.lock"), "burn").unwrap_or_else(|| "unknown".into()),
        }
    }

    /// One line for the head of a printed report.
    fn line(&self) -> String {
        format!(
            "machine: {}, {} logical CPUs ({}), {} GiB, {}, Burn {}",
            self.cpu,
            self.logical_cpus,
            self.simd.join(" "),
            self.memory_gib,
            self.os,
            self.burn,
        )
    }
}

/// A file's text, or nothing where it cannot be read.
fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The version a Cargo.lock's text records for `package`.
fn locked_version(lock: &str, package: &str) -> Option<String> {
    let mut lines = lock.lines();
    let name = format!("name = \"{package}\"");
    lines.find(|l| *l == name)?;
    let version = lines.next()?.strip_prefix("version = \"")?;
    Some(version.trim_end_matches('"').to_owned())
}

/// Everything a command reports, as written to its JSON file.
#[derive(Serialize)]
struct Record<'a, T: Serialize> {
    command: String,
    /// Seconds since the Unix epoch, and the UTC date.
    unix_time: u64,
    date: String,
    machine: Machine,
    /// The text the command printed.
    printed: &'a str,
    /// The measurements behind it.
    results: &'a T,
}

/// Prints the machine's description and `body`, and writes the same text with `results` to
/// `target/bench/<name>.json`, saying where.
pub fn publish<T: Serialize>(name: &str, body: &str, results: &T) -> Result<()> {
    let machine = Machine::describe();
    let printed = format!("{}\n{body}", machine.line());
    print!("{printed}");
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record = Record {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        unix_time,
        date: utc_date(unix_time),
        machine,
        printed: &printed,
        results,
    };
    let path = Path::new("target/bench").join(format!("{name}.json"));
    std::fs::create_dir_all("target/bench").context("target/bench: cannot create")?;
    let json = serde_json::to_string_pretty(&record)?;
    data::files::write_atomic(&path, json.as_bytes())?;
    eprintln!("written to {}", path.display());
    Ok(())
}

/// `YYYY-MM-DD` of a Unix time (the proleptic Gregorian calendar, UTC).
fn utc_date(unix_time: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (unix_time / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_796_400_000), "2026-12-04");
    }

    #[test]
    fn a_package_version_is_read_from_the_lock_file() {
        let lock = "[[package]]\nname = \"burn-core\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"burn\"\nversion = \"0.22.1\"\n";
        assert_eq!(locked_version(lock, "burn").as_deref(), Some("0.22.1"));
        assert_eq!(locked_version(lock, "torch"), None);
    }
}
