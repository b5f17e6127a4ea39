//! The end-of-epoch callback: continue each configured prompt with the current weights,
//! print the text and append it to `samples.txt`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use data::Vocab;
use model::{Generator, LstmLm, Sampling};

use crate::config::GenerateConfig;

/// Generates from every prompt and appends the texts to `samples_path`.
pub fn generate_samples(
    model: &LstmLm,
    vocab: &Vocab,
    device: &Device,
    settings: &GenerateConfig,
    epoch: usize,
    seed: u64,
    samples_path: &Path,
) -> Result<()> {
    let model = model.valid();
    let mut generator = Generator::new(
        &model,
        vocab,
        device.clone(),
        seed.wrapping_add(epoch as u64),
    );
    let sampling = Sampling::with_temperature(settings.temperature).map_err(anyhow::Error::msg)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(samples_path)
        .with_context(|| format!("{}: cannot open for appending", samples_path.display()))?;
    for prompt_text in &settings.prompts {
        let prompt = generator.prompt(prompt_text).map_err(anyhow::Error::msg)?;
        let ids = generator.generate(&prompt.ids, settings.max_tokens, &sampling);
        let text = format!(
            "{} {}",
            generator.decode(&prompt.ids),
            generator.decode(&ids)
        );
        println!(
            "generated text (epoch {epoch}, temperature {}):\n{text}\n",
            settings.temperature
        );
        writeln!(
            file,
            "epoch {epoch} | temperature {} | {text}",
            settings.temperature
        )
        .with_context(|| format!("{}: cannot write", samples_path.display()))?;
    }
    Ok(())
}
