//! The `inference` binary on broken checkpoints and bad requests: each exits 1 with `error:`
//! and the file or flag at fault named, never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use data::{Tokenizer, Vocab};
use model::burn::tensor::Device;
use model::{Checkpoint, CheckpointMeta, ModelConfig};

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lstm-inference-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A checkpoint of a model shaped like the next-letter toy's (a character LSTM(32) reading
/// windows of 3 letters), saved untrained: the tests need one that loads, not one that knows
/// the alphabet.
fn checkpoint() -> &'static Path {
    static CHECKPOINT: OnceLock<PathBuf> = OnceLock::new();
    CHECKPOINT.get_or_init(|| {
        let vocab = Vocab::build(('a'..='z').map(String::from), 100);
        let config = ModelConfig::sized(26, 32);
        let model = config.init(vocab.size(), &Device::flex());
        let meta = CheckpointMeta {
            model: config,
            vocab_size: vocab.size(),
            tokenizer: Tokenizer::Char,
            context: Some(3),
            epoch: 1,
            step: 1,
            loss: 0.0,
            within_epoch: None,
            smoothed_loss: None,
        };
        Checkpoint::save(&scratch("toy"), &model, None, None, &vocab, meta)
            .unwrap()
            .dir
    })
}

/// Runs the binary with `args`, expecting a refusal: exit code 1 and `error:` on stderr, no
/// panic; returns stderr.
fn refused(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_inference"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        stderr.starts_with("error: ") && !stderr.contains("panicked"),
        "{args:?}: {stderr}"
    );
    stderr
}

/// `generate --checkpoint DIR --prompt PROMPT` with `extra` flags.
fn generate<'a>(dir: &'a Path, prompt: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "generate",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--prompt",
        prompt,
    ];
    args.extend_from_slice(extra);
    args
}

/// Every broken checkpoint is refused with the file at fault named.
#[test]
fn broken_checkpoints_name_the_file() {
    let original = checkpoint();
    let dir = scratch("broken-checkpoints");
    let edit = |d: &Path, file: &str, from: &str, to: &str| {
        let text = std::fs::read_to_string(d.join(file)).unwrap();
        assert!(text.contains(from), "{file} lacks {from}: {text}");
        std::fs::write(d.join(file), text.replace(from, to)).unwrap();
    };
    type Break = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "empty",
            Box::new(|d| {
                std::fs::remove_dir_all(d)
                    .and_then(|()| std::fs::create_dir(d))
                    .unwrap()
            }),
            "no checkpoint",
        ),
        (
            "truncated-weights",
            Box::new(|d| {
                let bytes = std::fs::read(d.join("model.bpk")).unwrap();
                std::fs::write(d.join("model.bpk"), &bytes[..bytes.len() / 2]).unwrap();
            }),
            "model.bpk",
        ),
        (
            "corrupt-meta",
            Box::new(|d| std::fs::write(d.join("meta.json"), "{\"model\": 3").unwrap()),
            "meta.json",
        ),
        (
            "duplicated-entry",
            Box::new(|d| {
                let vocab = std::fs::read_to_string(d.join("vocab.txt")).unwrap();
                let mut lines: Vec<&str> = vocab.lines().collect();
                lines[5] = lines[6];
                std::fs::write(d.join("vocab.txt"), lines.join("\n") + "\n").unwrap();
            }),
            "vocab.txt",
        ),
        (
            "missing-vocab",
            Box::new(|d| std::fs::remove_file(d.join("vocab.txt")).unwrap()),
            "vocab.txt",
        ),
        (
            "sizes-disagree",
            Box::new(move |d| edit(d, "meta.json", "\"hidden_size\": 32", "\"hidden_size\": 48")),
            "model.bpk",
        ),
        (
            "context-zero",
            Box::new(move |d| edit(d, "meta.json", "\"context\": 3", "\"context\": 0")),
            "context",
        ),
    ];
    for (name, break_it, expected) in cases {
        let copy = dir.join(name);
        std::fs::create_dir_all(&copy).unwrap();
        for f in ["meta.json", "model.bpk", "vocab.txt"] {
            std::fs::copy(original.join(f), copy.join(f)).unwrap();
        }
        break_it(&copy);
        let e = refused(&generate(&copy, "abc", &[]));
        assert!(e.contains(expected) && e.contains(name), "{name}: {e}");
    }
    let e = refused(&generate(&dir.join("no-such-run"), "abc", &[]));
    assert!(e.contains("no-such-run"), "{e}");
}

/// A prompt with no token, or none the model knows, and a top-k above the vocabulary are
/// refused naming what is wrong; the same checkpoint generates from a good prompt.
#[test]
fn bad_generation_requests_are_refused() {
    let dir = checkpoint();
    for (prompt, extra, expected) in [
        ("", &[][..], "no tokens"),
        ("123", &[][..], "no token of the prompt `123`"),
        ("abc", &["--top-k", "1000"][..], "--top-k 1000"),
        ("abc", &["--top-k", "0"][..], "--top-k"),
        ("abc", &["--temperature", "0"][..], "--temperature"),
    ] {
        let e = refused(&generate(dir, prompt, extra));
        assert!(e.contains(expected), "{prompt:?} {extra:?}: {e}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_inference"))
        .args(generate(dir, "abc", &["--greedy", "--max-tokens", "1"]))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}
