//! Opening a wgpu adapter: listing what the machine offers, picking one and saying which.

use std::sync::Mutex;

use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind};

use super::spec::{DeviceError, GraphicsApi, OpenDevice};

/// What a caller asks for: an adapter number (or wgpu's pick) through an API.
type Selection = (Option<usize>, GraphicsApi);

/// Devices opened in this process, by selection: wgpu's runtime for a selection starts once,
/// and later calls (a test suite, a resumed run) reuse it.
static OPENED: Mutex<Vec<(Selection, OpenDevice)>> = Mutex::new(Vec::new());

/// Opens adapter `adapter` of [`adapters`] (wgpu's preferred one when `None`) through `api`.
pub(crate) fn open(adapter: Option<usize>, api: GraphicsApi) -> Result<OpenDevice, DeviceError> {
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, device)) = opened.iter().find(|(key, _)| *key == (adapter, api)) {
        return Ok(device.clone());
    }
    let found = adapters(api);
    let (kind, pinned) = match adapter {
        None => (DeviceKind::DefaultDevice, api),
        Some(n) => select(n, api, &found)?,
    };
    let (device, setup) = Device::wgpu_options()
        .device_kind(kind.clone())
        .graphics_api(wgpu_backend(pinned))
        .init_with_setup()
        .map_err(|e| DeviceError::Open {
            what: format!("{kind:?} through {pinned:?}"),
            detail: e.to_string(),
            listing: listing(api, &found),
        })?;
    let info = setup.adapter.get_info();
    let limits = setup.device.limits();
    let open = OpenDevice {
        device,
        description: format!(
            "wgpu on {} ({:?}), driver {}, {:?}",
            info.name,
            info.device_type,
            [info.driver.trim(), info.driver_info.trim()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
            info.backend
        ),
        adapters: (found.len() > 1).then(|| listing(api, &found)),
        max_buffer_bytes: Some(
            limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
        ),
    };
    opened.push(((adapter, api), open.clone()));
    Ok(open)
}

/// The adapters wgpu finds through `api` (every API for `Auto`), in the order `--device` counts.
fn adapters(api: GraphicsApi) -> Vec<wgpu::AdapterInfo> {
    let backends = match api {
        GraphicsApi::Auto => wgpu::Backends::PRIMARY | wgpu::Backends::SECONDARY,
        GraphicsApi::Vulkan => wgpu::Backends::VULKAN,
        GraphicsApi::Gl => wgpu::Backends::GL,
        GraphicsApi::Metal => wgpu::Backends::METAL,
        GraphicsApi::Dx12 => wgpu::Backends::DX12,
    };
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    futures_lite::future::block_on(instance.enumerate_adapters(backends))
        .iter()
        .map(wgpu::Adapter::get_info)
        .collect()
}

/// The numbered list of `found` (the [`adapters`] through `api`), or what to install when
/// there is none.
fn listing(api: GraphicsApi, found: &[wgpu::AdapterInfo]) -> String {
    if found.is_empty() {
        return format!(
            "wgpu finds no adapter through {api:?}. Without a GPU, Mesa's llvmpipe works through \
             OpenGL: install libegl1 libegl-mesa0 libgl1-mesa-dri and pass --graphics-api gl"
        );
    }
    let lines: Vec<String> = found
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "  --device {i}: {} ({:?}, {:?})",
                a.name, a.device_type, a.backend
            )
        })
        .collect();
    format!("adapters through {api:?}:\n{}", lines.join("\n"))
}

/// Burn's selector for adapter `n` of `found` (the [`adapters`] through `api`): its type, its
/// index among adapters of that type on the same API (how wgpu's runtime counts them), and its
/// API.
fn select(
    n: usize,
    api: GraphicsApi,
    found: &[wgpu::AdapterInfo],
) -> Result<(DeviceKind, GraphicsApi), DeviceError> {
    let Some(info) = found.get(n) else {
        return Err(DeviceError::NoSuchAdapter {
            number: n,
            listing: listing(api, found),
        });
    };
    let unselectable = |why: String| DeviceError::Unselectable {
        number: n,
        name: info.name.clone(),
        why,
    };
    let index = found[..n]
        .iter()
        .filter(|a| a.backend == info.backend && a.device_type == info.device_type)
        .count();
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(index),
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(index),
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(index),
        wgpu::DeviceType::Cpu => DeviceKind::Cpu,
        wgpu::DeviceType::Other => {
            return Err(unselectable(
                "reports no device type, which Burn cannot select; leave out --device to let wgpu pick".into(),
            ));
        }
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan => GraphicsApi::Vulkan,
        wgpu::Backend::Gl => GraphicsApi::Gl,
        wgpu::Backend::Metal => GraphicsApi::Metal,
        wgpu::Backend::Dx12 => GraphicsApi::Dx12,
        other => {
            return Err(unselectable(format!(
                "runs on {other:?}, which is not supported here"
            )));
        }
    };
    Ok((kind, api))
}

/// Burn's name for `api`.
fn wgpu_backend(api: GraphicsApi) -> WgpuBackend {
    match api {
        GraphicsApi::Auto => WgpuBackend::Auto,
        GraphicsApi::Vulkan => WgpuBackend::Vulkan,
        GraphicsApi::Gl => WgpuBackend::Gl,
        GraphicsApi::Metal => WgpuBackend::Metal,
        GraphicsApi::Dx12 => WgpuBackend::Dx12,
    }
}
