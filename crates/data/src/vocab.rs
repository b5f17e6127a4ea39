//! The vocabulary: id 0 is padding/stop (the empty string), id 1 is `[UNK]`, then tokens by
//! falling frequency, built exactly as Keras `TextVectorization.adapt` builds it.

use std::collections::HashMap;
use std::path::Path;

use crate::DataError;

/// Id of the padding token, which also marks the end of a text (the stop token).
pub const PAD_ID: u32 = 0;
/// Id of the token that stands for every word outside the vocabulary.
pub const UNK_ID: u32 = 1;
/// The text of the unknown-word token.
pub const UNK_TOKEN: &str = "[UNK]";

/// A bidirectional map between tokens and ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// Builds a vocabulary of at most `max_size` entries (the two reserved ones included) from
    /// token streams. Ties in frequency are broken by the token's UTF-8 bytes in descending
    /// order, as Keras does.
    pub fn build<I, T>(tokens: I, max_size: usize) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let mut counts: HashMap<String, u64> = HashMap::new();
        for token in tokens {
            let token = token.as_ref();
            match counts.get_mut(token) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(token.to_owned(), 1);
                }
            }
        }
        Self::from_counts(counts, max_size)
    }

    /// Builds a vocabulary of at most `max_size` entries from tokens and how often each
    /// occurs, ranked as [`Vocab::build`] ranks them.
    pub fn from_counts<I, T>(counts: I, max_size: usize) -> Self
    where
        I: IntoIterator<Item = (T, u64)>,
        T: AsRef<str>,
    {
        let mut ranked: Vec<(T, u64)> = counts.into_iter().collect();
        ranked.sort_unstable_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| b.0.as_ref().as_bytes().cmp(a.0.as_ref().as_bytes()))
        });
        let keep = max_size.saturating_sub(2);
        let words = ranked
            .into_iter()
            .take(keep)
            .map(|(t, _)| t.as_ref().to_owned());
        Self::from_tokens(
            [String::new(), UNK_TOKEN.to_owned()]
                .into_iter()
                .chain(words)
                .collect(),
        )
    }

    /// Wraps a token list already in id order (entry 0 must be padding, entry 1 `[UNK]`).
    fn from_tokens(tokens: Vec<String>) -> Self {
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Self { tokens, ids }
    }

    /// Number of entries, the reserved ones included.
    pub fn size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of `token`, or [`UNK_ID`] when it is not in the vocabulary.
    pub fn id(&self, token: &str) -> u32 {
        self.ids.get(token).copied().unwrap_or(UNK_ID)
    }

    /// True when `token` has an id of its own.
    pub fn contains(&self, token: &str) -> bool {
        self.ids.contains_key(token)
    }

    /// The token for `id` (the empty string for padding; `[UNK]` for an id out of range).
    pub fn token(&self, id: u32) -> &str {
        self.tokens
            .get(id as usize)
            .map_or(UNK_TOKEN, String::as_str)
    }

    /// All tokens in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Writes one token a line in id order (Keras's `get_vocabulary()` order), atomically.
    /// The character tokens newline and carriage return are written as `\n` and `\r` (no word
    /// or character token is ever those two characters).
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        crate::files::write_atomic(path, self.file_text().as_bytes())
    }

    /// The text [`Vocab::save`] writes.
    fn file_text(&self) -> String {
        let mut text = String::new();
        for t in &self.tokens {
            text.push_str(match t.as_str() {
                "\n" => "\\n",
                "\r" => "\\r",
                _ => t,
            });
            text.push('\n');
        }
        text
    }

    /// The SHA-256 of the vocabulary's file, in hex: two vocabularies with the same
    /// fingerprint give every token the same id.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(self.file_text().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Reads a vocabulary written by [`Vocab::save`], checking the reserved entries.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = crate::files::read_text(path)?;
        let tokens: Vec<String> = text
            .lines()
            .map(|line| match line {
                "\\n" => "\n".to_owned(),
                "\\r" => "\r".to_owned(),
                _ => line.to_owned(),
            })
            .collect();
        let format = |detail: String| DataError::Format {
            path: path.to_owned(),
            detail,
        };
        if tokens.len() < 2 || !tokens[0].is_empty() || tokens[1] != UNK_TOKEN {
            return Err(format(
                "not a vocabulary file: line 1 must be empty (padding) and line 2 `[UNK]`".into(),
            ));
        }
        let vocab = Self::from_tokens(tokens);
        if vocab.ids.len() != vocab.tokens.len() {
            return Err(format("the same token appears on two lines".into()));
        }
        Ok(vocab)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_vocabularies_with_line_breaks_round_trip() {
        let text = "Zażółć\r\ngęślą jaźń\n\\ café";
        let vocab = Vocab::build(text.chars().map(String::from), 100);
        let path = std::env::temp_dir().join(format!("vocab-chars-{}.txt", std::process::id()));
        vocab.save(&path).unwrap();
        let loaded = Vocab::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded, vocab);
        assert!(loaded.contains("\n") && loaded.contains("\r") && loaded.contains("\\"));
    }

    #[test]
    fn frequency_order_with_keras_tie_break() {
        let text = "b a c a b d ( ) ( )";
        let v = Vocab::build(text.split(' '), 100);
        // a, b, (, ) all occur twice: ties go by descending bytes; then c and d once each.
        assert_eq!(v.tokens(), ["", "[UNK]", "b", "a", ")", "(", "d", "c"]);
        assert_eq!(v.id("a"), 3);
        assert_eq!(v.id("zebra"), UNK_ID);
        assert_eq!(v.token(0), "");
    }

    #[test]
    fn max_size_counts_the_reserved_entries() {
        let v = Vocab::build("x x x y y z".split(' '), 4);
        assert_eq!(v.tokens(), ["", "[UNK]", "x", "y"]);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("vocab-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let v = Vocab::build("héllo wörld héllo".split(' '), 10);
        let path = dir.join("vocab.txt");
        v.save(&path).unwrap();
        assert_eq!(Vocab::load(&path).unwrap(), v);
        std::fs::write(&path, "hello\n").unwrap();
        let err = Vocab::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("vocab.txt") && err.contains("not a vocabulary"),
            "{err}"
        );
    }
}
