//! Training on a device a second process serves over loopback, through Burn's remote backend:
//! `train serve-device` in one process, `train --remote ws://...` in another, on a real port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Kills the served device when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `train serve-device` on a free port; the server and its address.
fn serve() -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["serve-device", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches(';')
        .to_owned();
    (server, url)
}

/// The next-letter toy's config, 15 epochs.
fn config(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("configs/alphabet.toml"))
        .unwrap()
        .replace(
            "datasets/alphabet",
            &root.join("datasets/alphabet").display().to_string(),
        )
        .replace("epochs = 300", "epochs = 15")
        .replace("eval_every = 100", "eval_every = 5");
    let path = dir.join("alphabet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The training losses of a run's metrics, one per evaluated epoch.
fn losses(run: &Path) -> Vec<f64> {
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = metrics.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "loss").unwrap();
    lines
        .map(|l| l.split(',').nth(column).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_run_trains_on_a_device_served_by_another_process() {
    let dir = std::env::temp_dir().join(format!("lstm-remote-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(&dir);
    let (_server, url) = serve();

    let train = |config: &Path, run: &str, flags: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_train"))
            .arg("--config")
            .arg(config)
            .arg("--out")
            .arg(dir.join(run))
            .args(flags)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{run}:\n{stdout}\n{stderr}");
        stdout
    };
    let log = train(&config, "remote", &["--remote", &url]);
    assert!(
        log.contains(&format!("device: remote device 0 served at {url}")),
        "{log}"
    );

    // The served device runs Burn's own operations, as the local reference path does.
    train(&config, "local", &["--kernels", "reference"]);
    let on_local = losses(&dir.join("local"));
    let on_remote = losses(&dir.join("remote"));
    assert_eq!(on_remote.len(), 3);
    assert!(on_remote[2] < on_remote[0], "it learns: {on_remote:?}");
    for (r, l) in on_remote.iter().zip(&on_local) {
        assert!(
            (r - l).abs() < 1e-4,
            "remote {on_remote:?}, local {on_local:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
