//! Choosing the compute backend and opening its device.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A backend Burn can run this model on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (the faster one here, with the fused operations).
    #[default]
    Flex,
    /// The `ndarray` CPU backend (the design card's burn-ndarray).
    Ndarray,
    /// A GPU (or a software rasteriser) through wgpu; needs the `wgpu` cargo feature.
    Wgpu,
}

/// The graphics API wgpu drives the adapter through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphicsApi {
    /// Vulkan where the machine has it, else the next API it has (wgpu's own order).
    #[default]
    Auto,
    /// Vulkan (Linux, Windows, Android).
    Vulkan,
    /// OpenGL / OpenGL ES through EGL (also Mesa's llvmpipe on machines without a GPU).
    Gl,
    /// Metal (macOS).
    Metal,
    /// DirectX 12 (Windows).
    Dx12,
}

/// Where the model runs: the backend, and for wgpu which adapter through which API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The backend.
    pub backend: Backend,
    /// The wgpu adapter's number in the list the log prints (default: wgpu's preferred one).
    pub adapter: Option<usize>,
    /// The graphics API for wgpu.
    pub graphics_api: GraphicsApi,
}

/// An opened device and a line saying what it is.
#[derive(Debug, Clone)]
pub struct OpenDevice {
    /// The inference device; `.autodiff()` on it for training.
    pub device: Device,
    /// The backend, and for wgpu the adapter's name, type, driver and graphics API.
    pub description: String,
    /// For wgpu on a machine with several adapters: the numbered list `--device` picks from.
    pub adapters: Option<String>,
    /// For wgpu: the most bytes one tensor may take (the adapter's largest storage buffer).
    pub max_buffer_bytes: Option<u64>,
}

impl DeviceSpec {
    /// Opens the device (for wgpu: picks the adapter and starts its runtime, once per process).
    pub fn open(&self) -> Result<OpenDevice, String> {
        if self.backend != Backend::Wgpu
            && (self.adapter.is_some() || self.graphics_api != GraphicsApi::Auto)
        {
            return Err(format!(
                "--device and --graphics-api (train.device, train.graphics_api) choose a wgpu adapter; backend `{}` runs on the CPU",
                self.backend
            ));
        }
        let cpu = |device| OpenDevice {
            device,
            description: self.backend.to_string(),
            adapters: None,
            max_buffer_bytes: None,
        };
        match self.backend {
            Backend::Flex => Ok(cpu(Device::flex())),
            #[allow(deprecated)] // still the design card's CPU backend; flex is the default
            Backend::Ndarray => Ok(cpu(Device::ndarray())),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => crate::wgpu_device::open(self.adapter, self.graphics_api),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => Err(
                "this binary was built without the `wgpu` feature; rebuild with it, e.g. \
                 `cargo run --release -p train --features wgpu -- --config NAME --backend wgpu` \
                 (or `-p inference --features wgpu`)"
                    .into(),
            ),
        }
    }
}

/// Makes the CPU (flex) Burn's default device in this process, unless `BURN_DEVICE` names one.
///
/// Burn loads saved optimizer state onto its default device before moving it to the model's.
/// With wgpu compiled in, that default is a GPU: resuming would start a second wgpu runtime
/// beside the training one (which Mesa's OpenGL driver refuses), or fail on a machine without
/// any adapter even when training on the CPU.
///
/// # Safety
/// It changes the environment: call it before any other thread starts.
pub unsafe fn default_to_cpu() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the caller guarantees no other thread runs yet.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
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

impl OpenDevice {
    /// An error naming both sizes when one batch's logits, `rows` positions x `vocab` words of
    /// f32 and the largest tensor of a step, would not fit in a single buffer of this device
    /// (Mesa's OpenGL allows 128 MiB; the CPU has no limit).
    pub fn check_logits_fit(&self, rows: usize, vocab: usize) -> Result<(), String> {
        let bytes = (rows * vocab * std::mem::size_of::<f32>()) as u64;
        match self.max_buffer_bytes {
            Some(max) if bytes > max => Err(format!(
                "{}: one batch's logits ({rows} positions x {vocab} words) take {} MiB in one buffer, more than this adapter's largest ({} MiB)",
                self.description,
                bytes >> 20,
                max >> 20
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for OpenDevice {
    /// The description, then the adapter list where there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)?;
        match &self.adapters {
            Some(list) => write!(f, "\n{list}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        })
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "flex" => Ok(Backend::Flex),
            "ndarray" => Ok(Backend::Ndarray),
            "wgpu" => Ok(Backend::Wgpu),
            other => Err(format!(
                "unknown backend `{other}`; use `flex`, `ndarray` or `wgpu`"
            )),
        }
    }
}

impl TryFrom<String> for Backend {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for GraphicsApi {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(GraphicsApi::Auto),
            "vulkan" => Ok(GraphicsApi::Vulkan),
            "gl" => Ok(GraphicsApi::Gl),
            "metal" => Ok(GraphicsApi::Metal),
            "dx12" => Ok(GraphicsApi::Dx12),
            other => Err(format!(
                "unknown graphics API `{other}`; use `auto`, `vulkan`, `gl`, `metal` or `dx12`"
            )),
        }
    }
}

/// The device flags `train` and `inference` share; each overrides its config value.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeviceArgs {
    /// Backend: flex or ndarray (CPU), or wgpu (GPU; needs the `wgpu` cargo feature).
    #[arg(long)]
    pub backend: Option<Backend>,
    /// wgpu adapter number from the list the log prints (default: wgpu's pick).
    #[arg(long, value_name = "N")]
    pub device: Option<usize>,
    /// wgpu graphics API: auto, vulkan, gl, metal or dx12.
    #[arg(long, value_name = "API")]
    pub graphics_api: Option<GraphicsApi>,
}

impl DeviceArgs {
    /// `spec` with the flags given on the command line applied.
    pub fn apply(&self, spec: DeviceSpec) -> DeviceSpec {
        DeviceSpec {
            backend: self.backend.unwrap_or(spec.backend),
            adapter: self.device.or(spec.adapter),
            graphics_api: self.graphics_api.unwrap_or(spec.graphics_api),
        }
    }
}
