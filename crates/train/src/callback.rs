//! The end-of-epoch callback: continue each configured prompt with the current weights,
//! print the text and append it to `samples.txt` in the run directory.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use data::Vocab;
use model::{Generator, LanguageModel, Sampling};

use pipeline::config::Config;

/// Generates on `device` from every one of `prompts` at every temperature of
/// `config.generate` and appends the texts to `samples.txt`.
pub fn generate_samples(
    model: &LanguageModel,
    vocab: &Vocab,
    config: &Config,
    prompts: &[String],
    device: &Device,
    epoch: usize,
    run_dir: &Path,
) -> Result<()> {
    let settings = &config.generate;
    let model = model.valid();
    let seed = config.train.seed.wrapping_add(epoch as u64);
    let context = config.data.examples.context(config.data.seq_len);
    let mut generator = Generator::new(&model, vocab, config.data.tokenizer, device.clone(), seed)
        .with_context(context);
    let path = run_dir.join("samples.txt");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("{}: cannot open for appending", path.display()))?;
    for &temperature in &settings.temperatures {
        let sampling = Sampling::with_temperature(temperature)?;
        for prompt_text in prompts {
            let prompt = generator.prompt(prompt_text)?;
            let ids = generator
                .generate(&prompt.ids, settings.max_tokens, &sampling, &[])
                .ids;
            let text = generator.decode(&[prompt.ids, ids].concat());
            println!("generated text (epoch {epoch}, temperature {temperature}):\n{text}\n");
            // One write per line: a kill between two cannot leave half a line.
            let line = format!(
                "epoch {epoch} | temperature {temperature} | {}\n",
                text.replace('\n', "\\n")
            );
            file.write_all(line.as_bytes())
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
    }
    Ok(())
}
