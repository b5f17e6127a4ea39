//! The one data pipeline of a config's corpus, for the trainer, the bench and the tests alike:
//! corpus -> tokens -> vocabulary -> examples -> batches, the held-out part aside.

use std::sync::Arc;

use data::prepared::Read;
use data::{Encoded, Encoder, Part, PrepareSettings, TokenSettings, TokenStore, Vocab};

use crate::config::{Config, ExampleKind};
use crate::dataset::Dataset;
use crate::error::PipelineError;

/// Corpora at least this large get a note suggesting `train prepare`.
const LARGE_CORPUS_BYTES: u64 = 256 << 20;

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

/// The settings of `config` that decide its ids: what `train prepare` records and what a
/// prepared corpus is checked against.
pub fn token_settings(config: &Config) -> PrepareSettings {
    let examples = match config.data.examples {
        ExampleKind::Stream => "stream",
        _ => "records",
    };
    PrepareSettings {
        corpus: config.corpus.clone(),
        data: TokenSettings {
            tokenizer: config.data.tokenizer,
            examples: examples.into(),
            vocab_size: config.data.vocab_size,
            validation: config.data.validation,
        },
    }
}

/// Reads the corpus of `config` (or maps its prepared form, `corpus.prepared`), builds the
/// vocabulary from the training part and cuts both parts into examples; an error when the
/// training part yields no example.
pub fn prepare(config: &Config) -> Result<PreparedData, PipelineError> {
    let settings = token_settings(config);
    let (encoded, source) = match &config.corpus.prepared {
        Some(dir) => {
            let (encoded, manifest) = settings.open(dir)?;
            let source = format!(
                "prepared corpus {}: {} records, {} tokens, read through a memory map",
                dir.display(),
                manifest.records,
                manifest.tokens
            );
            (encoded, source)
        }
        None => {
            let (encoded, read) = settings.encode()?;
            (encoded, with_size_note(read))
        }
    };
    let Encoded {
        vocab,
        store,
        split,
    } = encoded;
    let store = Arc::new(store);
    let training = examples(&store, &split.training, config)?;
    let validation = match split.held_out.is_empty() {
        true => None,
        false => Some(examples(&store, &split.held_out, config)?),
    };
    Ok(PreparedData {
        vocab,
        training,
        validation,
        source,
    })
}

/// The log line of a corpus read as text, with a note when it is large enough to prepare.
fn with_size_note(read: Read) -> String {
    let bytes: u64 = read
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    match bytes >= LARGE_CORPUS_BYTES {
        true => format!(
            "{}\nnote: this corpus is {} MB; `cargo run -p train -- prepare --config CONFIG` tokenises it once, and training then reads it through a memory map (corpus.prepared)",
            read.summary,
            bytes >> 20
        ),
        false => read.summary,
    }
}

/// The whole corpus of `config` encoded with an existing vocabulary (a checkpoint's, to score
/// text with it): the examples, the tokens read and how many of them `vocab` lacks.
pub fn encode_with(
    config: &Config,
    vocab: &Vocab,
) -> Result<(Dataset, usize, usize), PipelineError> {
    let settings = token_settings(config);
    let mut encoder = Encoder::in_memory(config.data.tokenizer);
    settings.read_into(&mut encoder)?;
    let tokens = encoder.tokens();
    let unknown: u64 = encoder
        .counts(tokens)?
        .into_iter()
        .filter(|(token, _)| !vocab.contains(token))
        .map(|(_, n)| n)
        .sum();
    let part = match settings.data.stream() {
        true => Part::Tokens(0..tokens),
        false => Part::Records(0..encoder.records()),
    };
    let store = Arc::new(encoder.into_store(vocab)?);
    let data = examples(&store, &part, config)?;
    Ok((data, tokens as usize, unknown as usize))
}

/// The examples of `part`, or an error naming the config's corpus when there are none.
fn examples(
    store: &Arc<TokenStore>,
    part: &Part,
    config: &Config,
) -> Result<Dataset, PipelineError> {
    Dataset::new(store, part, &config.data).map_err(|error| PipelineError::Corpus {
        corpus: config.corpus.path.clone(),
        error,
    })
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
