//! Choosing the compute backend and opening its device.

#[cfg(feature = "remote")]
mod remote;
mod spec;
#[cfg(feature = "wgpu")]
mod wgpu_adapter;

use burn::tensor::Device;

#[cfg(feature = "remote")]
pub use remote::serve;
pub use spec::{BackendKind, DeviceArgs, DeviceError, DeviceSpec, GraphicsApi, OpenDevice};

impl DeviceSpec {
    /// Opens the device (for wgpu: picks the adapter and starts its runtime, once per process).
    pub fn open(&self) -> Result<OpenDevice, DeviceError> {
        let on_cpu = matches!(self.backend, BackendKind::Flex | BackendKind::Ndarray);
        if on_cpu && (self.adapter.is_some() || self.graphics_api != GraphicsApi::Auto) {
            return Err(DeviceError::AdapterOnCpu(self.backend));
        }
        if (self.backend == BackendKind::Remote) != self.remote.is_some() {
            return Err(DeviceError::RemoteAddress);
        }
        let cpu = |device| OpenDevice {
            device,
            description: self.backend.to_string(),
            adapters: None,
            max_buffer_bytes: None,
        };
        match self.backend {
            BackendKind::Flex => Ok(cpu(Device::flex())),
            #[allow(deprecated)] // Burn deprecates ndarray for flex; kept as `--backend ndarray`
            BackendKind::Ndarray => Ok(cpu(Device::ndarray())),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => wgpu_adapter::open(self.adapter, self.graphics_api),
            #[cfg(not(feature = "wgpu"))]
            BackendKind::Wgpu => Err(DeviceError::WgpuNotBuilt),
            #[cfg(feature = "remote")]
            BackendKind::Remote => remote::open(
                self.remote.as_deref().unwrap_or_default(),
                self.adapter.unwrap_or(0),
            ),
            #[cfg(not(feature = "remote"))]
            BackendKind::Remote => Err(DeviceError::RemoteNotBuilt),
        }
    }
}
