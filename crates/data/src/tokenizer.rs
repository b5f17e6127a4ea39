//! Splitting text into tokens. Words are standardised exactly as the textbook's Keras
//! pipeline does it: `pad_punctuation` (spaces around every ASCII punctuation character, runs
//! of spaces collapsed), then Keras `TextVectorization(standardize="lower")`, which lowercases
//! ASCII only and splits on ASCII whitespace only (a non-breaking space stays inside its
//! token). Characters are every Unicode scalar value, unchanged.

use serde::{Deserialize, Serialize};

/// How text becomes tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// Standardised words and punctuation marks (the recipe chapter).
    #[default]
    Word,
    /// Every character, case and all (char-rnn).
    Char,
}

impl Tokenizer {
    /// The tokens of `text`.
    pub fn tokens(self, text: &str) -> Vec<String> {
        match self {
            Tokenizer::Word => words(text),
            Tokenizer::Char => text.chars().map(String::from).collect(),
        }
    }

    /// What goes between tokens when they are printed back as text.
    pub fn separator(self) -> &'static str {
        match self {
            Tokenizer::Word => " ",
            Tokenizer::Char => "",
        }
    }
}

/// Puts a space on each side of every ASCII punctuation character and collapses runs of
/// spaces (only U+0020; newlines and tabs are kept), as the chapter's `pad_punctuation`.
pub fn pad_punctuation(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let push = |c: char, out: &mut String| {
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    };
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            push(' ', &mut out);
            out.push(c);
            out.push(' ');
        } else {
            push(c, &mut out);
        }
    }
    out
}

/// Keras's whitespace split: the ASCII whitespace characters, vertical tab included.
fn is_split_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Lowercases ASCII letters and splits on ASCII whitespace (after [`pad_punctuation`]).
pub fn split_lower(padded: &str) -> impl Iterator<Item = String> + '_ {
    padded
        .split(is_split_char)
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
}

/// The whole word standardisation: `pad_punctuation`, ASCII lowercase, whitespace split.
pub fn words(text: &str) -> Vec<String> {
    split_lower(&pad_punctuation(text)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_becomes_separate_tokens() {
        assert_eq!(
            words("Preheat oven to 450°F. Add 1/2 cup (packed)!"),
            [
                "preheat", "oven", "to", "450°f", ".", "add", "1", "/", "2", "cup", "(", "packed",
                ")", "!"
            ]
        );
    }

    #[test]
    fn lowercasing_is_ascii_only_and_nbsp_stays_inside_a_token() {
        assert_eq!(words("CRÈME Brûlée"), ["crÈme", "brûlée"]);
        assert_eq!(words("a\u{a0}b c"), ["a\u{a0}b", "c"]);
    }

    #[test]
    fn characters_round_trip_non_ascii_text() {
        let text = "Zażółć gęślą jaźń — Съешь же ещё, café\n";
        let tokens = Tokenizer::Char.tokens(text);
        assert_eq!(tokens.len(), text.chars().count());
        assert_eq!(tokens.concat(), text);
    }

    #[test]
    fn pad_keeps_newlines_and_collapses_spaces() {
        assert_eq!(pad_punctuation("a,  b\nc"), "a , b\nc");
    }
}
