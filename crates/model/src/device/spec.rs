//! What a run asks for (backend, wgpu adapter, graphics API) and what it got.

use std::fmt;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A backend Burn can run this model on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend (the faster one here, with the fused operations).
    #[default]
    Flex,
    /// The `ndarray` CPU backend (burn-ndarray, which the project's specification names; flex,
    /// the default, is faster).
    Ndarray,
    /// A GPU (or a software rasteriser) through wgpu; needs the `wgpu` cargo feature.
    Wgpu,
    /// A device another process serves over the network (`train serve-device`), possibly on
    /// another machine; needs the `remote` cargo feature.
    Remote,
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

/// Where the model runs: the backend, for wgpu which adapter through which API, for a remote
/// device which server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The backend.
    pub backend: BackendKind,
    /// The wgpu adapter's number in the list the log prints (default: wgpu's preferred one);
    /// for a remote server, the number of its device (default 0).
    pub adapter: Option<usize>,
    /// The graphics API for wgpu.
    pub graphics_api: GraphicsApi,
    /// For a remote device: the server's address, such as `ws://127.0.0.1:3000`.
    pub remote: Option<String>,
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

impl OpenDevice {
    /// An error naming both sizes when one batch's logits, `rows` positions x `vocab` words of
    /// f32 and the largest tensor of a step, would not fit in a single buffer of this device
    /// (Mesa's OpenGL allows 128 MiB; the CPU has no limit).
    pub fn check_logits_fit(&self, rows: usize, vocab: usize) -> Result<(), DeviceError> {
        let bytes = (rows * vocab * std::mem::size_of::<f32>()) as u64;
        match self.max_buffer_bytes {
            Some(max) if bytes > max => Err(DeviceError::LogitsTooLarge {
                device: self.description.clone(),
                rows,
                vocab,
                mib: bytes >> 20,
                max_mib: max >> 20,
            }),
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

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Remote => "remote",
        })
    }
}

/// The device flags `train` and `inference` share; each overrides its config value.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeviceArgs {
    /// Backend: flex or ndarray (CPU), or wgpu (GPU; needs the `wgpu` cargo feature).
    #[arg(long, value_parser = crate::parse_setting::<BackendKind>)]
    pub backend: Option<BackendKind>,
    /// wgpu adapter number from the list the log prints (default: wgpu's pick).
    #[arg(long, value_name = "N")]
    pub device: Option<usize>,
    /// wgpu graphics API: auto, vulkan, gl, metal or dx12.
    #[arg(long, value_name = "API", value_parser = crate::parse_setting::<GraphicsApi>)]
    pub graphics_api: Option<GraphicsApi>,
    /// Train on the device a `train serve-device` process serves at URL (such as
    /// ws://127.0.0.1:3000); implies `--backend remote`. Needs the `remote` cargo feature.
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
}

impl DeviceArgs {
    /// `spec` with the flags given on the command line applied.
    pub fn apply(&self, spec: DeviceSpec) -> DeviceSpec {
        let backend = match (&self.remote, self.backend) {
            (Some(_), None) => BackendKind::Remote,
            (_, backend) => backend.unwrap_or(spec.backend),
        };
        DeviceSpec {
            backend,
            adapter: self.device.or(spec.adapter),
            graphics_api: self.graphics_api.unwrap_or(spec.graphics_api),
            remote: self.remote.clone().or(spec.remote),
        }
    }
}

/// Why a device could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// An adapter or graphics API was given for a CPU backend.
    #[error(
        "--device and --graphics-api (train.device, train.graphics_api) choose a wgpu adapter; backend `{0}` runs on the CPU"
    )]
    AdapterOnCpu(BackendKind),
    /// `remote` was asked for in a build without the feature.
    #[error(
        "this binary was built without the `remote` feature; rebuild with it, e.g. `cargo run --release -p train --features remote -- --config NAME --remote ws://HOST:PORT`"
    )]
    RemoteNotBuilt,
    /// The remote backend without a server address, or an address for another backend.
    #[error(
        "backend `remote` and a server address (train.remote, --remote) go together: set both, e.g. `--remote ws://127.0.0.1:3000`"
    )]
    RemoteAddress,
    /// The remote server did not answer.
    #[error("remote device {index} at {url}: {detail} (is `train serve-device` running there?)")]
    RemoteConnect {
        /// The server's address.
        url: String,
        /// The device's number on it.
        index: usize,
        /// The transport's error.
        detail: String,
    },
    /// Serving a device failed.
    #[error("serving the device: {0}")]
    Serve(String),
    /// `wgpu` was asked for in a build without the feature.
    #[error(
        "this binary was built without the `wgpu` feature; rebuild with it, e.g. `cargo run --release -p train --features wgpu -- --config NAME --backend wgpu` (or `-p inference --features wgpu`)"
    )]
    WgpuNotBuilt,
    /// The adapter number is not in the list.
    #[error("wgpu: there is no adapter {number}\n{listing}")]
    NoSuchAdapter {
        /// The number asked for.
        number: usize,
        /// The adapters there are.
        listing: String,
    },
    /// The adapter exists but Burn cannot select it.
    #[error("wgpu: adapter {number} ({name}) {why}")]
    Unselectable {
        /// The number asked for.
        number: usize,
        /// The adapter's name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// wgpu's runtime did not start on the adapter.
    #[error("wgpu: cannot open {what}: {detail}\n{listing}")]
    Open {
        /// The adapter kind and API asked for.
        what: String,
        /// wgpu's error.
        detail: String,
        /// The adapters there are, or what to install.
        listing: String,
    },
    /// One batch's logits do not fit the adapter's largest buffer.
    #[error(
        "{device}: one batch's logits ({rows} positions x {vocab} words) take {mib} MiB in one buffer, more than this adapter's largest ({max_mib} MiB)"
    )]
    LogitsTooLarge {
        /// The device's description.
        device: String,
        /// Positions in the batch.
        rows: usize,
        /// Vocabulary entries.
        vocab: usize,
        /// The logits' size.
        mib: u64,
        /// The adapter's largest buffer.
        max_mib: u64,
    },
}
