//! The data pipeline reproduces Keras's own TextVectorization output exactly
//! (golden files made by TensorFlow 2.21 from the same corpus: tests/golden/).

use data::tokenizer::{pad_punctuation, words};
use std::sync::Arc;

use data::{CorpusSpec, Encoder, Sequences, Shape, Tokenizer, Vocab};
use e2e::{recipes, root};

fn golden() -> serde_json::Value {
    let path = root().join("tests/golden/keras-textvectorization/first50.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn vocabulary_texts_and_ids_match_keras() {
    let corpus = CorpusSpec::new(recipes()).load().unwrap();
    assert_eq!(corpus.texts.len(), 18_691);
    assert_eq!(corpus.skipped, 0);
    let golden = golden();

    let padded: Vec<String> = corpus.texts[..50]
        .iter()
        .map(|t| pad_punctuation(t))
        .collect();
    let want: Vec<&str> = golden["texts_after_pad_punctuation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(padded, want);

    let tokenized: Vec<Vec<String>> = corpus.texts.iter().map(|t| words(t)).collect();
    let vocab = Vocab::build(tokenized.iter().flatten(), 10_000);
    let keras_vocab =
        std::fs::read_to_string(root().join("tests/golden/keras-textvectorization/vocab.txt"))
            .unwrap();
    let keras_vocab: Vec<&str> = keras_vocab.lines().collect();
    assert_eq!(vocab.size(), keras_vocab.len());
    for (id, (ours, theirs)) in vocab.tokens().iter().zip(&keras_vocab).enumerate() {
        assert_eq!(ours, theirs, "vocabulary differs at id {id}");
    }

    let mut encoder = Encoder::in_memory(Tokenizer::Word);
    for text in &corpus.texts[..50] {
        encoder.push(text).unwrap();
    }
    let store = Arc::new(encoder.into_store(&vocab).unwrap());
    let seqs = Sequences::new(store, 0..50, Shape::Padded, 200);
    let mut ids = Vec::new();
    for (i, row) in golden["ids"].as_array().unwrap().iter().enumerate() {
        let want: Vec<u32> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        ids.clear();
        seqs.row(i, &mut ids);
        assert_eq!(ids, want, "ids of record {i}");
    }
}
