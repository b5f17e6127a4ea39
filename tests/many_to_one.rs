//! Many-to-one toys: the next-letter toy's alphabet (`def -> g`) and the n-gram prefix model's
//! pre-padded prefixes.

use e2e::{generate_greedy as generate, root, scratch, train_small};
use pipeline::config::ExampleKind;

#[test]
fn the_alphabet_model_says_def_then_g_and_knows_every_window() {
    let (mut config, _) = pipeline::Config::load(&root().join("configs/alphabet.toml")).unwrap();
    config.corpus.path = root().join(&config.corpus.path);
    let run = scratch("alphabet").join("run");
    let summary = train::train(&config, &run, false).unwrap();
    assert_eq!(summary.epochs.last().unwrap().step, 300);
    assert_eq!(generate(&run, "def", 1), "defg");
    // Each letter from the three before it alone: 23 windows, all right.
    assert_eq!(generate(&run, "abc", 23), "abcdefghijklmnopqrstuvwxyz");
}

/// Loss bound after 2 epochs on the prefixes of 256 recipe titles (measured 4.69, from
/// ln 400 = 5.99), and on the 64 held-out titles (measured 5.13).
const PREFIX_BOUND: f64 = 5.2;
const PREFIX_VAL_BOUND: f64 = 5.6;

#[test]
fn prefixes_of_titles_train_with_a_held_out_validation_loss() {
    let (run, summary) = train_small("prefixes", |c| {
        c.corpus.template = Some("{title}".into());
        c.data.examples = ExampleKind::Prefixes;
        c.data.seq_len = 12;
        c.data.validation = 0.2;
        c.generate.prompts = vec!["chocolate".into()];
    });
    let last = summary.epochs.last().unwrap();
    let val = last.val_loss.expect("a validation loss");
    assert!(
        last.loss < PREFIX_BOUND && val < PREFIX_VAL_BOUND,
        "loss {} validation {val}",
        last.loss
    );
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let row: Vec<&str> = metrics.lines().nth(2).unwrap().split(',').collect();
    assert_eq!(row[4].parse::<f64>().unwrap(), (val * 1e6).round() / 1e6);
    let meta = std::fs::read_to_string(run.join("checkpoints/epoch-002/meta.json")).unwrap();
    assert!(meta.contains("\"context\": 12"), "{meta}");
    let out = generate(&run, "chocolate", 4);
    assert_eq!(out.split(' ').count(), 5, "{out}");
}
