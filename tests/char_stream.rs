//! Seed 000 end to end: a character model trained on one stream with carried state until
//! the seed's smoothed loss target, then greedy generation reproduces the passage exactly.

use clap::Parser;
use e2e::{root, scratch};

#[test]
fn the_ai_applications_passage_is_memorised_and_reproduced_exactly() {
    let (mut config, _) =
        train::Config::load(&root().join("configs/ai-applications.toml")).unwrap();
    config.corpus.path = root().join(&config.corpus.path);
    config.train.eval_every = 100_000; // one checkpoint, at the end
    let run = scratch("ai-applications").join("run");
    let summary = train::train(&config, &run, false).unwrap();
    let last = summary.epochs.last().unwrap();
    assert!(
        last.step < config.train.max_steps.unwrap(),
        "the loss target was not reached in {} steps",
        last.step
    );

    let passage = std::fs::read_to_string(&config.corpus.path).unwrap();
    let args = [
        "inference",
        "generate",
        "--checkpoint",
        run.to_str().unwrap(),
        "--prompt",
        "A",
        "--greedy",
        "--max-tokens",
        "384",
    ];
    let out = inference::run(&inference::Cli::try_parse_from(args).unwrap()).unwrap();
    assert_eq!(out.trim_end_matches('\n'), passage);
}
