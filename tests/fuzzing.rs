//! Random input never panics: random bytes and random records fed to the corpus loaders, the
//! tokenizers, the vocabulary loader, a checkpoint's `meta.json` and the config parser only
//! ever give an answer or an error.

use std::path::PathBuf;

use data::{CorpusSpec, Tokenizer, Vocab};
use proptest::prelude::*;

/// A scratch file for one case: the same directory for the whole property, a name per format.
fn case_file(dir: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lstm-fuzz-{}-{dir}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Bytes that are mostly the characters of real corpora, with stray ones.
fn corpus_bytes() -> impl Strategy<Value = Vec<u8>> {
    let text = prop::collection::vec(
        prop::sample::select(b"{}[]\",:|\n \tabcRecipe0123\\\xc3\xa9\xff".to_vec()),
        0..400,
    );
    prop_oneof![text, prop::collection::vec(any::<u8>(), 0..400)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn corpus_loaders_answer_or_refuse_random_bytes(bytes in corpus_bytes(), format in 0..5usize) {
        let name = ["corpus.json", "corpus.jsonl", "corpus.csv", "corpus.txt", "corpus.json.gz"][format];
        let path = case_file("corpus", name, &bytes);
        let spec = CorpusSpec::new(&path);
        let _ = spec.load();
        let _ = spec.read_stream(|_| Ok(()));
    }

    #[test]
    fn corpus_loaders_answer_or_refuse_random_records(
        records in prop::collection::vec(
            prop::collection::hash_map("[a-z]{1,8}", prop_oneof![
                "[ -~]{0,20}".prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
                prop::collection::vec("[a-z ]{0,8}", 0..3).prop_map(serde_json::Value::from),
            ], 0..4),
            0..20,
        ),
    ) {
        let json = serde_json::to_vec(&records).unwrap();
        let path = case_file("records", "records.json", &json);
        if let Ok(corpus) = CorpusSpec::new(&path).load() {
            prop_assert!(corpus.texts.len() <= records.len());
        }
    }

    #[test]
    fn tokenizers_split_any_text(text in "\\PC{0,200}") {
        for tokenizer in [Tokenizer::Word, Tokenizer::Char] {
            let tokens = tokenizer.tokens(&text);
            prop_assert!(tokens.iter().all(|t| !t.is_empty()), "{tokens:?}");
        }
    }

    #[test]
    fn the_vocabulary_loader_answers_or_refuses_random_bytes(bytes in corpus_bytes()) {
        let path = case_file("vocab", "vocab.txt", &bytes);
        if let Ok(vocab) = Vocab::load(&path) {
            prop_assert!(vocab.size() >= 2);
        }
    }

    #[test]
    fn a_checkpoint_with_a_random_meta_json_is_refused_or_read(bytes in corpus_bytes()) {
        let path = case_file("checkpoint", "meta.json", &bytes);
        let _ = model::Checkpoint::open(path.parent().unwrap());
    }

    #[test]
    fn the_config_parser_answers_or_refuses_random_text(
        lines in prop::collection::vec(prop_oneof![
            Just("[corpus]".to_string()),
            Just("[data]".to_string()),
            Just("[train]".to_string()),
            "[a-z_]{1,12} = [0-9.\\-]{1,6}",
            "[a-z_]{1,12} = \"[ -~]{0,10}\"",
            "[ -~]{0,30}",
        ], 0..12),
    ) {
        let path = case_file("config", "config.toml", lines.join("\n").as_bytes());
        let _ = pipeline::Config::load(&path);
    }
}
