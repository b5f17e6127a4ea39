//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};

/// The repository root (tests run with the `tests/` package as working directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The shipped recipe corpus.
pub fn recipes() -> PathBuf {
    root().join("datasets/epicurious/recipes.json.gz")
}

/// A fresh, empty scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lstm-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes a small recipe config into `dir` (paths absolute), with `extra` appended.
pub fn small_config(dir: &Path, extra: &str) -> PathBuf {
    let text = format!(
        r#"[corpus]
path = "{}"
max_records = 320

[data]
vocab_size = 400
seq_len = 32
batch_size = 16

[model]
embedding_dim = 16
hidden_size = 32

[train]
epochs = 2
learning_rate = 0.01

[generate]
max_tokens = 12
{extra}
"#,
        recipes().display()
    );
    let path = dir.join("small.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Trains the small recipe config, changed by `edit`, into `<scratch name>/run`; returns the
/// run directory and its summary.
pub fn train_small(
    name: &str,
    edit: impl FnOnce(&mut pipeline::Config),
) -> (PathBuf, train::RunSummary) {
    let dir = scratch(name);
    let (mut config, _) = pipeline::Config::load(&small_config(&dir, "")).expect("small config");
    edit(&mut config);
    let run = dir.join("run");
    let summary = train::train(&config, &run, false).expect("training");
    (run, summary)
}

/// `inference generate --greedy` from `prompt` with the checkpoint of `run`, without the
/// final newline.
pub fn generate_greedy(run: &Path, prompt: &str, max_tokens: usize) -> String {
    use clap::Parser;
    let max_tokens = max_tokens.to_string();
    let args = [
        "inference",
        "generate",
        "--checkpoint",
        run.to_str().expect("UTF-8 path"),
        "--prompt",
        prompt,
        "--greedy",
        "--max-tokens",
        &max_tokens,
    ];
    let cli = inference::Cli::try_parse_from(args).expect("arguments");
    let out = inference::run(&cli).expect("generate");
    out.trim_end_matches('\n').to_owned()
}

/// `train::run` with parsed flags, with no signal to stop it.
pub fn run_train(args: &train::Args) -> anyhow::Result<train::RunSummary> {
    train::run(args, &Default::default())
}
