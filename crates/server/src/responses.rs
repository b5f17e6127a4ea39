//! The answers' shapes, as OpenAI's API documents them.

use model::generation::TokenLogprobs;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{ServedModel, token_name};

/// What both APIs put around their choices.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope<'a, C> {
    /// `cmpl-...` or `chatcmpl-...`, the same in every chunk of one answer.
    pub id: &'a str,
    /// `text_completion`, `chat.completion` or `chat.completion.chunk`.
    pub object: &'static str,
    /// Seconds since 1970.
    pub created: u64,
    /// The served model's name.
    pub model: &'a str,
    /// The choices (none in a stream's usage chunk).
    pub choices: Vec<C>,
    /// Token counts: in whole answers, and in a stream's last chunk when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    /// Tokens of the prompts, each counted once.
    pub prompt_tokens: usize,
    /// Tokens generated, every choice's.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

impl Usage {
    /// The counts for `prompt` and `completion` tokens.
    pub fn new(prompt: usize, completion: usize) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        }
    }
}

/// A completions choice, whole or one chunk of it.
#[derive(Debug, Clone, Serialize)]
pub struct TextChoice {
    /// The text (a piece of it in a chunk).
    pub text: String,
    /// Prompt index times `n` plus the choice's rank.
    pub index: usize,
    /// The tokens' log-probabilities when asked for.
    pub logprobs: Option<TextLogprobs>,
    /// `stop` or `length`; `null` until a stream's last chunk of the choice.
    pub finish_reason: Option<&'static str>,
}

/// The completions API's `logprobs`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TextLogprobs {
    /// Each token's text, with the separator that joins it to the text before.
    pub tokens: Vec<String>,
    /// Each token's log-probability (`null` for an echoed prompt's first token).
    pub token_logprobs: Vec<Option<f32>>,
    /// The most likely tokens at each position.
    pub top_logprobs: Vec<Option<Map<String, Value>>>,
    /// Where each token begins in the choice's text.
    pub text_offset: Vec<usize>,
}

impl TextLogprobs {
    /// Adds `entries`, each token's text preceded by `separator` (the first by `first`),
    /// from `offset` in the text on, which it moves.
    pub fn extend(
        &mut self,
        served: &ServedModel,
        separators: (&str, &str),
        entries: &[TokenLogprobs],
        offset: &mut usize,
    ) {
        for (k, entry) in entries.iter().enumerate() {
            let separator = if k == 0 { separators.0 } else { separators.1 };
            let text = |id: u32| format!("{separator}{}", token_name(&served.vocab, id));
            self.text_offset.push(*offset);
            *offset += text(entry.id).len();
            self.tokens.push(text(entry.id));
            self.token_logprobs.push(Some(entry.logprob));
            let top = entry
                .top
                .iter()
                .map(|&(id, lp)| (text(id), Value::from(lp)));
            self.top_logprobs.push(Some(top.collect()));
        }
    }

    /// Adds a prompt's first token, which has no log-probability.
    pub fn first_token(&mut self, text: String, offset: &mut usize) {
        self.text_offset.push(*offset);
        *offset += text.len();
        self.tokens.push(text);
        self.token_logprobs.push(None);
        self.top_logprobs.push(None);
    }
}

/// A chat choice, whole (`message`) or one chunk of it (`delta`).
#[derive(Debug, Clone, Serialize)]
pub struct ChatChoice {
    /// The choice's rank.
    pub index: usize,
    /// The answer, in a whole response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<ChatMessage>,
    /// What a chunk adds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    /// The tokens' log-probabilities when asked for.
    pub logprobs: Option<ChatLogprobs>,
    /// `stop` or `length`; `null` until a stream's last chunk of the choice.
    pub finish_reason: Option<&'static str>,
}

/// An assistant's message.
#[derive(Debug, Clone, Serialize)]
pub struct ChatMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// The generated text.
    pub content: String,
}

/// A chunk's addition to a message.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta {
    /// `assistant`, in a choice's first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// The next piece of text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// The chat API's `logprobs`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatLogprobs {
    /// One entry per token.
    pub content: Vec<ChatTokenLogprob>,
}

/// One token's log-probability in the chat API, with its alternatives.
#[derive(Debug, Clone, Serialize)]
pub struct ChatTokenLogprob {
    /// The token's text, with the separator that joins it to the text before.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// The text's UTF-8 bytes.
    pub bytes: Vec<u8>,
    /// The most likely tokens there (without alternatives of their own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<Vec<ChatTokenLogprob>>,
}

impl ChatLogprobs {
    /// `entries` in the chat API's shape, the first token after `first` (no separator at the
    /// start of an answer), the others after `separator`.
    pub fn of(served: &ServedModel, separators: (&str, &str), entries: &[TokenLogprobs]) -> Self {
        let one = |separator: &str, id: u32, logprob: f32, top: Option<Vec<ChatTokenLogprob>>| {
            let token = format!("{separator}{}", token_name(&served.vocab, id));
            ChatTokenLogprob {
                bytes: token.as_bytes().to_vec(),
                token,
                logprob,
                top_logprobs: top,
            }
        };
        let content = entries
            .iter()
            .enumerate()
            .map(|(k, entry)| {
                let separator = if k == 0 { separators.0 } else { separators.1 };
                let top = entry
                    .top
                    .iter()
                    .map(|&(id, lp)| one(separator, id, lp, None))
                    .collect();
                one(separator, entry.id, entry.logprob, Some(top))
            })
            .collect();
        Self { content }
    }
}
