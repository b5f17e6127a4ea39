//! OpenAI's own client packages against a served model: the Python package and LangChain's
//! `OpenAI` and `ChatOpenAI` (`tests/clients/run_clients.py`) and the Node package
//! (`tests/clients/run_clients.mjs`), installed under target/clients/ by
//! `tests/clients/setup.sh`. Compiled in with `--features clients`.

use std::path::Path;
use std::process::Command;

use e2e::train_small;

use crate::serving::start;

/// Runs `program` with `args`; fails with its output unless it exits 0. Its stdout.
fn run(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; install the clients with `bash tests/clients/setup.sh`",
                program.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} {args:?}: {}\n{stdout}{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn openais_python_and_node_packages_and_langchain_work_unchanged() {
    let (run_dir, _) = train_small("clients", |c| c.train.epochs = 1);
    let addr = start(&run_dir, &[]);
    let url = format!("http://{addr}/v1");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../target/clients/venv/bin/python");
    let script = root.join("clients/run_clients.py");
    let lines = run(&python, &[script.to_str().unwrap(), &url, "run"]);
    assert_eq!(lines.lines().count(), 9, "{lines}");
    let node = Path::new("node");
    let script = root.join("clients/run_clients.mjs");
    let lines = run(node, &[script.to_str().unwrap(), &url, "run"]);
    assert_eq!(lines.lines().count(), 2, "{lines}");
}
