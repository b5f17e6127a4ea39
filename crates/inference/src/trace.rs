//! `inference trace`: one LSTM cell's gates, token by token.

use std::fmt::Write;

use anyhow::Result;
use clap::Args;

use crate::loaded::{Loaded, Source};

/// `inference trace` flags.
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    #[command(flatten)]
    pub source: Source,
    /// How many units of each vector to print (the norm covers them all).
    #[arg(long, default_value_t = 4)]
    pub units: usize,
}

pub(crate) fn trace(args: &TraceArgs) -> Result<String> {
    let loaded = Loaded::open(&args.source.model)?;
    let (_, ids) = loaded.generator(&args.source.prompt, 0)?;
    let steps = model::generation::trace::trace(&loaded.model, &ids)
        .map_err(|e| anyhow::anyhow!("{}: {e}", loaded.ckpt.dir.display()))?;
    let mut out = String::new();
    for (t, (id, step)) in ids.iter().zip(steps).enumerate() {
        writeln!(out, "step {} token {:?}", t + 1, loaded.vocab.token(*id))?;
        for (name, v) in [
            ("f", &step.f),
            ("i", &step.i),
            ("c~", &step.candidate),
            ("c", &step.c),
            ("o", &step.o),
            ("h", &step.h),
        ] {
            let shown: Vec<String> = v
                .iter()
                .take(args.units)
                .map(|x| format!("{x:+.4}"))
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            writeln!(
                out,
                "  {name:<3}[{}{}]  norm {norm:.4}",
                shown.join(", "),
                if v.len() > args.units { ", ..." } else { "" }
            )?;
        }
    }
    Ok(out)
}
