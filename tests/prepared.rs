//! A prepared corpus gives exactly the batches the text gives, for every kind of example, and
//! is refused once its source or settings no longer match.

use std::path::{Path, PathBuf};

use data::Batch;
use e2e::{root, scratch, small_config};
use pipeline::Config;
use pipeline::prepare::{PreparedData, prepare};
use train::PrepareArgs;

/// Every batch of two epochs of both parts.
fn batches(data: &PreparedData) -> Vec<Batch> {
    let parts = [Some(&data.training), data.validation.as_ref()];
    parts
        .into_iter()
        .flatten()
        .flat_map(|part| (1..=2).flat_map(move |epoch| part.epoch(42, epoch)))
        .collect()
}

/// Prepares `config` into `dir/prepared` through the `prepare` command; the config reading it.
fn prepared(config_path: &Path, dir: &Path) -> (Config, PathBuf) {
    let out = dir.join("prepared");
    let args = PrepareArgs {
        config: config_path.to_owned(),
        out: Some(out.clone()),
    };
    train::prepare_command::prepare(&args).expect("prepare");
    let (mut config, _) = Config::load(config_path).unwrap();
    config.corpus.prepared = Some(out.clone());
    (config, out)
}

#[test]
fn prepared_corpora_give_the_same_batches_as_the_text() {
    // The shipped configs of each kind of example, their corpora cut to keep the test short.
    let cases = [
        ("recipes.toml", Some(2000)),
        ("recipe-titles.toml", Some(1500)),
        ("alphabet.toml", None),
        ("shakespeare-char.toml", None),
    ];
    for (name, max_records) in cases {
        let dir = scratch(&format!("prepared-{name}"));
        let (mut config, _) = Config::load(&root().join("configs").join(name)).unwrap();
        config.corpus.path = root().join(&config.corpus.path);
        config.corpus.max_records = max_records;
        let config_path = dir.join(name);
        std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();

        let text = prepare(&config).unwrap();
        let (from_disk, out) = prepared(&config_path, &dir);
        let mapped = prepare(&from_disk).unwrap();
        assert!(mapped.source.contains("memory map"), "{}", mapped.source);
        assert_eq!(mapped.vocab, text.vocab, "{name}: vocabulary");
        assert_eq!(
            mapped.validation.is_some(),
            text.validation.is_some(),
            "{name}"
        );
        let (a, b) = (batches(&text), batches(&mapped));
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len(), "{name}: batches");
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert_eq!(a, b, "{name}: batch {i}");
        }
        let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
        assert!(manifest.contains("vocab_sha256"), "{manifest}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_prepared_corpus_is_refused_when_its_source_or_settings_changed() {
    let dir = scratch("prepared-changed");
    // A copy of the recipes that can be changed.
    let corpus = dir.join("recipes.json.gz");
    std::fs::copy(e2e::recipes(), &corpus).unwrap();
    let text = std::fs::read_to_string(small_config(&dir, "")).unwrap();
    let config_path = dir.join("small.toml");
    let text = text.replace(
        &e2e::recipes().display().to_string(),
        &corpus.display().to_string(),
    );
    std::fs::write(&config_path, text).unwrap();
    let (config, out) = prepared(&config_path, &dir);
    assert!(prepare(&config).is_ok());

    let mut other = config.clone();
    other.data.vocab_size = 300;
    let e = format!("{:#}", prepare(&other).err().unwrap());
    assert!(
        e.contains("manifest.json") && e.contains("data.vocab_size = 400") && e.contains("300"),
        "{e}"
    );

    let original = std::fs::read(&corpus).unwrap();
    let modified = std::fs::metadata(&corpus).unwrap().modified().unwrap();
    std::fs::write(&corpus, &original[..original.len() - 10]).unwrap();
    let e = format!("{:#}", prepare(&config).err().unwrap());
    assert!(
        e.contains("recipes.json.gz") && e.contains("changed since it was prepared"),
        "{e}"
    );

    // The source as it was, but a damaged vocabulary file.
    std::fs::write(&corpus, &original).unwrap();
    let file = std::fs::File::options().write(true).open(&corpus).unwrap();
    file.set_modified(modified).unwrap();
    assert!(prepare(&config).is_ok());
    std::fs::write(out.join("vocab.txt"), "\n[UNK]\nsalt\n").unwrap();
    let e = format!("{:#}", prepare(&config).err().unwrap());
    assert!(e.contains("vocab.txt") && e.contains("SHA-256"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A config training on the lines of `corpus`, a plain-text file.
fn text_config(dir: &Path, corpus: &Path) -> PathBuf {
    let text = std::fs::read_to_string(small_config(dir, ""))
        .unwrap()
        .replace(
            &format!("path = \"{}\"", e2e::recipes().display()),
            &format!("path = \"{}\"\nformat = \"text\"", corpus.display()),
        );
    let path = dir.join("lines.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn resuming_from_a_prepared_corpus_with_another_vocabulary_is_refused() {
    let dir = scratch("prepared-resume");
    let recipes = data::CorpusSpec::new(e2e::recipes()).load().unwrap().texts;
    let corpus = dir.join("lines.txt");
    std::fs::write(&corpus, recipes[..300].join("\n")).unwrap();
    let config_path = text_config(&dir, &corpus);
    let (mut config, _) = Config::load(&config_path).unwrap();
    config.train.epochs = 1;
    config.train.max_batches_per_epoch = Some(1);
    let run = dir.join("run");
    train::train(&config, &run, false).unwrap();

    // The corpus rewritten with other recipes and prepared: same settings, another vocabulary.
    std::fs::write(&corpus, recipes[300..600].join("\n")).unwrap();
    let (mut from_disk, _) = prepared(&config_path, &dir);
    from_disk.train.epochs = 2;
    from_disk.train.max_batches_per_epoch = Some(1);
    let e = format!("{:#}", train::train(&from_disk, &run, true).err().unwrap());
    assert!(
        e.contains("vocabulary") && e.contains("SHA-256") && e.contains("differs"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
