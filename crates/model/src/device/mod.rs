//! Choosing the compute backend and opening its device.

mod spec;
#[cfg(feature = "wgpu")]
mod wgpu_adapter;

use burn::tensor::Device;

pub use spec::{BackendKind, DeviceArgs, DeviceError, DeviceSpec, GraphicsApi, OpenDevice};

impl DeviceSpec {
    /// Opens the device (for wgpu: picks the adapter and starts its runtime, once per process).
    pub fn open(&self) -> Result<OpenDevice, DeviceError> {
        if self.backend != BackendKind::Wgpu
            && (self.adapter.is_some() || self.graphics_api != GraphicsApi::Auto)
        {
            return Err(DeviceError::AdapterOnCpu(self.backend));
        }
        let cpu = |device| OpenDevice {
            device,
            description: self.backend.to_string(),
            adapters: None,
            max_buffer_bytes: None,
        };
        match self.backend {
            BackendKind::Flex => Ok(cpu(Device::flex())),
            #[allow(deprecated)] // still the design card's CPU backend; flex is the default
            BackendKind::Ndarray => Ok(cpu(Device::ndarray())),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => wgpu_adapter::open(self.adapter, self.graphics_api),
            #[cfg(not(feature = "wgpu"))]
            BackendKind::Wgpu => Err(DeviceError::WgpuNotBuilt),
        }
    }
}
