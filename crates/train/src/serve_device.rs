//! `train serve-device`: this machine's device served to training runs elsewhere through
//! Burn's remote backend.

use std::io::Write;
use std::net::TcpListener;

use anyhow::{Context, Result, bail};
use model::{BackendKind, DeviceSpec};

use crate::cli::ServeDeviceArgs;

/// Opens the device, listens on `args.listen` and serves until Ctrl-C or SIGTERM; the first
/// line printed names the address runs connect to.
pub fn serve_device(args: &ServeDeviceArgs) -> Result<()> {
    let spec = args.device.apply(DeviceSpec::default());
    if spec.backend == BackendKind::Remote {
        bail!(
            "serve-device serves this machine's own device: choose --backend flex, ndarray or wgpu"
        );
    }
    let opened = spec.open()?;
    let listener = TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    println!(
        "serving {} at ws://{address}; train on it with --remote ws://{address} (Ctrl-C stops)",
        opened.description
    );
    std::io::stdout().flush()?;
    serve(opened.device, listener)
}

#[cfg(feature = "remote")]
fn serve(device: burn::tensor::Device, listener: TcpListener) -> Result<()> {
    Ok(model::device::serve(vec![device], listener)?)
}

#[cfg(not(feature = "remote"))]
fn serve(_: burn::tensor::Device, _: TcpListener) -> Result<()> {
    Err(model::DeviceError::RemoteNotBuilt.into())
}
