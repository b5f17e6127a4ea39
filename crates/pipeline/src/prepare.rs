//! The one data pipeline of a config's corpus, for the trainer, the bench and the tests alike:
//! corpus -> tokens -> vocabulary -> examples -> batches, the held-out part aside.

use anyhow::{Context, Result};
use data::Vocab;

use crate::config::{Config, ExampleKind};
use crate::dataset::Dataset;

/// A config's corpus, encoded and ready for training.
pub struct PreparedData {
    /// The vocabulary the training part builds.
    pub vocab: Vocab,
    /// The training examples.
    pub training: Dataset,
    /// The held-out examples, when `data.validation` holds some out.
    pub validation: Option<Dataset>,
    /// What was read, for the log.
    pub source: String,
}

/// Reads, tokenises and encodes the corpus of `config`; an error when it yields no example.
pub fn prepare(config: &Config) -> Result<PreparedData> {
    let (tokenized, source) = tokenize(config)?;
    let settings = &config.data;
    let (training, held_out) = split_validation(tokenized, settings.validation, settings.examples);
    // From the training part only: held-out words the model never saw count as [UNK], so the
    // validation loss is not flattered.
    let vocab = Vocab::build(training.iter().flatten(), settings.vocab_size);
    let encode = |part: &[Vec<String>]| {
        Dataset::new(part, &vocab, settings, settings.batch_size)
            .with_context(|| format!("corpus {}", config.corpus.path.display()))
    };
    let training = encode(&training)?;
    let validation = match held_out.iter().map(Vec::len).sum::<usize>() {
        0 => None,
        _ => Some(encode(&held_out)?),
    };
    Ok(PreparedData {
        vocab,
        training,
        validation,
        source,
    })
}

/// The whole corpus of `config` encoded with an existing vocabulary (a checkpoint's, to score
/// text with it): the examples, the tokens read and how many of them `vocab` lacks.
pub fn encode_with(config: &Config, vocab: &Vocab) -> Result<(Dataset, usize, usize)> {
    let (tokenized, _) = tokenize(config)?;
    let tokens = tokenized.iter().map(Vec::len).sum();
    let unknown = tokenized
        .iter()
        .flatten()
        .filter(|t| !vocab.contains(t))
        .count();
    let data = Dataset::new(&tokenized, vocab, &config.data, config.data.batch_size)?;
    Ok((data, tokens, unknown))
}

/// The corpus as token lists (one per record, or a single one for a stream) and a line saying
/// what was read.
fn tokenize(config: &Config) -> Result<(Vec<Vec<String>>, String)> {
    let tokenizer = config.data.tokenizer;
    let path = config.corpus.path.display();
    if config.data.examples == ExampleKind::Stream {
        let text = config.corpus.load_stream()?;
        let source = format!(
            "corpus {path}: {} characters, read as one stream",
            text.chars().count()
        );
        return Ok((vec![tokenizer.tokens(&text)], source));
    }
    let corpus = config.corpus.load()?;
    let source = format!(
        "corpus {path}: {} records ({} skipped for a missing {})",
        corpus.texts.len(),
        corpus.skipped,
        corpus.fields.join(" or ")
    );
    let tokens = corpus.texts.iter().map(|t| tokenizer.tokens(t)).collect();
    Ok((tokens, source))
}

/// Splits off the last `fraction` of the records, or of the one stream's tokens, for
/// validation (nanoGPT's and Keras's `validation_split` take the end, too).
fn split_validation(
    mut tokenized: Vec<Vec<String>>,
    fraction: f64,
    examples: ExampleKind,
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let keep = |n: usize| n - (n as f64 * fraction).round() as usize;
    if examples == ExampleKind::Stream {
        let stream = tokenized.pop().unwrap_or_default();
        let (train, held_out) = stream.split_at(keep(stream.len()));
        return (vec![train.to_vec()], vec![held_out.to_vec()]);
    }
    let held_out = tokenized.split_off(keep(tokenized.len()));
    (tokenized, held_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use data::CorpusSpec;

    #[test]
    fn the_vocabulary_comes_from_the_training_part_only() {
        let path = std::env::temp_dir().join(format!("lstm-vocab-{}.txt", std::process::id()));
        std::fs::write(
            &path,
            "salt and pepper\nsalt and oil\npepper and oil\nzebra cake\n",
        )
        .unwrap();
        let mut config = Config::textbook(CorpusSpec::new(&path));
        config.data.validation = 0.25;
        config.data.seq_len = 4;
        let data = prepare(&config).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(data.vocab.contains("oil"));
        assert!(!data.vocab.contains("zebra") && !data.vocab.contains("cake"));
        assert_eq!(data.validation.map(|v| v.examples()), Some(1));
    }
}
