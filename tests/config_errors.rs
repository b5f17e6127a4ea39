//! Config mistakes give an error naming the file and the key, never a panic.

use std::path::Path;

use clap::Parser;
use e2e::{scratch, small_config};

fn run(config: &Path) -> String {
    run_with(config, &[])
}

/// The error of training `config` with the extra flags `flags`.
fn run_with(config: &Path, flags: &[&str]) -> String {
    let out = config.with_file_name("run");
    let args = train::Args::try_parse_from(
        [
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .into_iter()
        .chain(flags.iter().copied()),
    )
    .unwrap();
    format!("{:#}", e2e::run_train(&args).unwrap_err())
}

#[test]
fn unknown_key_is_named_with_the_file() {
    let dir = scratch("unknown-key");
    let config = small_config(&dir, "tempreature = 0.5\n");
    let e = run(&config);
    assert!(e.contains("small.toml") && e.contains("tempreature"), "{e}");
}

#[test]
fn malformed_toml_and_missing_files_are_named() {
    let dir = scratch("malformed");
    let config = dir.join("broken.toml");
    std::fs::write(&config, "[corpus\npath = 1").unwrap();
    let e = run(&config);
    assert!(e.contains("broken.toml"), "{e}");

    let config = dir.join("missing-corpus.toml");
    std::fs::write(&config, "[corpus]\npath = \"/no/such/recipes.json\"\n").unwrap();
    let e = run(&config);
    assert!(e.contains("/no/such/recipes.json"), "{e}");

    let e = run(&dir.join("nope.toml"));
    assert!(e.contains("nope.toml") && e.contains("not found"), "{e}");
}

#[test]
fn empty_corpus_and_bad_temperature_are_refused() {
    let dir = scratch("empty");
    let corpus = dir.join("empty.json");
    std::fs::write(&corpus, "[]").unwrap();
    let config = dir.join("empty.toml");
    std::fs::write(
        &config,
        format!("[corpus]\npath = \"{}\"\n", corpus.display()),
    )
    .unwrap();
    let e = run(&config);
    assert!(
        e.contains("empty.json") && e.contains("no usable records"),
        "{e}"
    );

    let config = small_config(&dir, "temperatures = [-1.0]\n");
    let e = run(&config);
    assert!(e.contains("generate.temperatures"), "{e}");
}

#[test]
fn a_diverging_loss_stops_training_with_a_clear_error() {
    let dir = scratch("nan");
    let config = small_config(&dir, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("learning_rate = 0.01", "learning_rate = 3e38");
    std::fs::write(&config, text).unwrap();
    let e = run(&config);
    assert!(
        e.contains("the loss became") && e.contains("learning_rate"),
        "{e}"
    );
    assert!(
        !config
            .with_file_name("run")
            .join("checkpoints/epoch-001")
            .exists()
    );
}

#[test]
fn device_choices_are_checked_before_anything_is_written() {
    let dir = scratch("device-flags");
    let config = small_config(&dir, "");
    let e = run_with(&config, &["--device", "1"]);
    assert!(e.contains("--device") && e.contains("`flex`"), "{e}");
    #[cfg(not(feature = "wgpu"))]
    {
        let e = run_with(&config, &["--backend", "wgpu"]);
        assert!(e.contains("--features wgpu"), "{e}");
    }
    #[cfg(feature = "wgpu")]
    {
        let e = run_with(&config, &["--backend", "wgpu", "--device", "99"]);
        assert!(e.contains("no adapter"), "{e}");
    }
    assert!(!dir.join("run").exists(), "nothing is written");

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[train]\n", "[train]\ngraphics_api = \"opengl\"\n"),
    )
    .unwrap();
    let e = run(&config);
    assert!(e.contains("small.toml") && e.contains("opengl"), "{e}");
}
