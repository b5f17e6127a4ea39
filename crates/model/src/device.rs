//! Choosing the compute backend.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A CPU backend Burn can run this model on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (the faster one here).
    #[default]
    Flex,
    /// The `ndarray` backend (the design card's burn-ndarray).
    Ndarray,
}

impl Backend {
    /// The inference device.
    pub fn device(self) -> Device {
        match self {
            Backend::Flex => Device::flex(),
            #[allow(deprecated)] // still the design card's CPU backend; flex is the default
            Backend::Ndarray => Device::ndarray(),
        }
    }

    /// The training device: the same with automatic differentiation.
    pub fn autodiff_device(self) -> Device {
        self.device().autodiff()
    }
}

/// Whether `device` runs the fused LSTM and loss (flex, with or without autodiff); other
/// backends run Burn's stock `nn::Lstm`, `Linear` and cross-entropy, as does flex when
/// `TEXTGEN_FUSED=0` is set (the bench's "stock Burn" row).
pub fn runs_fused_ops(device: &Device) -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("TEXTGEN_FUSED").map_or(true, |v| v != "0"))
        && device.clone().inner() == Device::flex()
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
        })
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "flex" => Ok(Backend::Flex),
            "ndarray" => Ok(Backend::Ndarray),
            "wgpu" => Err("backend `wgpu` is not built in yet; use `flex` or `ndarray`".into()),
            other => Err(format!(
                "unknown backend `{other}`; use `flex` or `ndarray`"
            )),
        }
    }
}
