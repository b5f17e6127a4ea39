//! Devices over the network through Burn's remote backend: a training run drives a device that
//! another process serves, on this machine or another one (WebSocket transport).

use std::net::TcpListener;

use burn::tensor::Device;
use burn::tensor::remote::RemoteHost;
use burn::tensor::server::{RemoteServer, WebSocketTransport};

use super::spec::{DeviceError, OpenDevice};

/// Connects device `index` of the server at `url`.
pub(crate) fn open(url: &str, index: usize) -> Result<OpenDevice, DeviceError> {
    let host = RemoteHost::websocket(url);
    let device = Device::remote_options(&host)
        .device_index(index)
        .init()
        .map_err(|e| DeviceError::RemoteConnect {
            url: url.to_owned(),
            index,
            detail: e.to_string(),
        })?;
    Ok(OpenDevice {
        device,
        description: format!("remote device {index} served at {url}"),
        adapters: None,
        max_buffer_bytes: None,
    })
}

/// Serves `devices` to training runs on `listener` until Ctrl-C or SIGTERM; a run picks one
/// by its number in this list.
pub fn serve(devices: Vec<Device>, listener: TcpListener) -> Result<(), DeviceError> {
    RemoteServer::new(devices)
        .serve(WebSocketTransport::from_listener(listener))
        .map_err(|e| DeviceError::Serve(e.to_string()))
}
