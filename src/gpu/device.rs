//! The WebGPU adapter and device: found once, asked for the adapter's own limits, and described
//! for `info`. Natively wgpu runs on Vulkan (lavapipe when there is no GPU), in the browser on
//! the page's WebGPU.

use std::sync::{Arc, Mutex};

use super::kernels::Variant;
use crate::error::{Error, Result};

/// How to set up the device.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GpuOptions {
    /// Use `shader-f16` (an f16 KV cache) when the device has it; `false` forces the f32 path.
    pub allow_f16: bool,
    /// Bytes per storage binding, if lower than the device's limit: tensors larger than this are
    /// split into parts (tests use a small value to exercise the splitting on small models).
    pub max_binding_bytes: Option<u64>,
    /// Bytes per buffer, if lower than the device's `maxBufferSize` (tests force small limits).
    pub max_buffer_bytes: Option<u64>,
    /// The kernel variant by name (see [`Variant`]); `None`: the adapter's.
    pub kernels: Option<String>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions { allow_f16: true, max_binding_bytes: None, max_buffer_bytes: None, kernels: None }
    }
}

/// What the adapter is and what it allows, for `info` and bench reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub vendor: u32,
    pub device: u32,
    /// "DiscreteGpu", "IntegratedGpu", "Cpu" (a software rasterizer), ...
    pub device_type: String,
    pub backend: String,
    pub driver: String,
    pub driver_info: String,
    /// The adapter's features (wgpu names).
    pub features: Vec<String>,
    pub limits: LimitsReport,
    /// Whether kernels use f16 (the device has `shader-f16` and it was allowed).
    pub f16: bool,
    /// The kernel variant the device runs ([`Variant`]), and whether it was the adapter's
    /// choice (`false`: asked for by name).
    pub kernels: Variant,
    pub kernels_chosen_for_adapter: bool,
    /// The adapter's subgroup sizes, least and most (meaningful where `features` has
    /// `SUBGROUP`: 32 on NVIDIA, 8 on lavapipe).
    pub subgroup_sizes: [u32; 2],
}

/// The limits that decide buffer splitting and kernel shapes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LimitsReport {
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    pub min_uniform_buffer_offset_alignment: u32,
    pub min_storage_buffer_offset_alignment: u32,
}

/// A device and its queue, with what the kernels need to know about them.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub report: AdapterReport,
    /// The f16 path: shader-f16 is enabled and the KV cache is f16.
    pub f16: bool,
    /// Bytes per storage binding that buffers are split to.
    pub max_binding: u64,
    pub uniform_align: u64,
    /// Whether the adapter is a software rasterizer (lavapipe, SwiftShader).
    pub software: bool,
    /// The kernel shapes this device runs.
    pub kernels: Variant,
    /// The first error the device reported outside an error scope, or its loss.
    failure: Arc<Mutex<Option<Error>>>,
}

/// The limits every kernel is written for: WebGPU's defaults, except that workgroup memory and
/// invocations must reach what the kernels use.
const NEED_INVOCATIONS: u32 = 256;
const NEED_WORKGROUP_BYTES: u32 = 16 * 1024;

impl Gpu {
    /// Find an adapter and open a device on it with the adapter's own limits.
    pub async fn new(options: &GpuOptions) -> Result<Gpu> {
        let asked = options.kernels.as_deref().map(Variant::parse).transpose()?;
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::VULKAN
                | wgpu::Backends::METAL
                | wgpu::Backends::DX12
                | wgpu::Backends::BROWSER_WEBGPU,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoWebGpu(format!("wgpu found none ({e})")))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        if limits.max_compute_invocations_per_workgroup < NEED_INVOCATIONS
            || limits.max_compute_workgroup_storage_size < NEED_WORKGROUP_BYTES
        {
            return Err(Error::NoWebGpu(format!(
                "the adapter {} allows {} invocations and {} bytes of workgroup memory; the kernels need {} and {}",
                info.name,
                limits.max_compute_invocations_per_workgroup,
                limits.max_compute_workgroup_storage_size,
                NEED_INVOCATIONS,
                NEED_WORKGROUP_BYTES
            )));
        }
        let has_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        let f16 = has_f16 && options.allow_f16;
        let software = info.device_type == wgpu::DeviceType::Cpu;
        let subgroups = adapter.features().contains(wgpu::Features::SUBGROUP);
        let kernels = asked.unwrap_or(Variant::for_adapter(software, subgroups));
        if !adapter.features().contains(kernels.features()) {
            return Err(Error::InvalidArgument(format!(
                "kernels \"{}\": the adapter {} lacks {:?}",
                kernels.name(),
                info.name,
                kernels.features()
            )));
        }
        let mut features = kernels.features();
        if f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("webgpu-llm"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoWebGpu(format!("the adapter {} refused a device: {e}", info.name)))?;

        let failure = Arc::new(Mutex::new(None));
        let lost = failure.clone();
        device.set_device_lost_callback(move |reason, message| {
            let mut slot = lost.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(Error::DeviceLost(format!("{reason:?}: {message}")));
        });
        let uncaptured = failure.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = uncaptured.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(gpu_error(e));
        }));

        let max_buffer = options.max_buffer_bytes.map_or(limits.max_buffer_size, |b| b.min(limits.max_buffer_size));
        let device_limit = limits.max_storage_buffer_binding_size.min(max_buffer);
        let max_binding = options.max_binding_bytes.map_or(device_limit, |b| b.min(device_limit));
        let report = AdapterReport {
            name: info.name.clone(),
            vendor: info.vendor,
            device: info.device,
            device_type: format!("{:?}", info.device_type),
            backend: format!("{:?}", info.backend),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            features: adapter.features().iter_names().map(|(name, _)| name.to_string()).collect(),
            limits: LimitsReport {
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                max_buffer_size: max_buffer,
                max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
                max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
                max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
                max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
                min_uniform_buffer_offset_alignment: limits.min_uniform_buffer_offset_alignment,
                min_storage_buffer_offset_alignment: limits.min_storage_buffer_offset_alignment,
            },
            f16,
            subgroup_sizes: [info.subgroup_min_size, info.subgroup_max_size],
            kernels,
            kernels_chosen_for_adapter: asked.is_none(),
        };
        Ok(Gpu {
            device,
            queue,
            software,
            kernels,
            report,
            f16,
            max_binding,
            uniform_align: limits.min_uniform_buffer_offset_alignment as u64,
            failure,
        })
    }

    /// [`Gpu::new`], waiting for the answer (native only: the browser cannot block).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(options: &GpuOptions) -> Result<Gpu> {
        pollster::block_on(Gpu::new(options))
    }

    /// The device's loss or first uncaptured error, if any happened.
    pub fn check(&self) -> Result<()> {
        match self.failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Run `work` (buffer creation, pipeline creation) and turn the errors the device reports
    /// for it into ours: out of memory, or a validation error naming what failed.
    pub async fn scoped<T>(&self, what: &str, work: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = work();
        let v = validation.pop().await;
        let o = oom.pop().await;
        match o.or(v) {
            None => Ok(value),
            Some(wgpu::Error::OutOfMemory { .. }) => {
                Err(Error::OutOfMemory(format!("the GPU ran out of memory for {what}")))
            }
            Some(e) => Err(Error::UnsupportedModel(format!("the GPU rejected {what}: {e}"))),
        }
    }

    /// Wait until the queue is idle (native); the browser resolves map requests by itself.
    pub fn wait(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost(format!("waiting for the GPU failed: {e}")))?;
        self.check()
    }
}

impl Gpu {
    /// Resolves when the work submitted so far is done (natively by waiting; in the browser
    /// through `onSubmittedWorkDone`).
    pub async fn idle(&self) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            let (send, done) = super::buffers::signal();
            self.queue.on_submitted_work_done(move || send(()));
            done.await;
        }
        self.wait()
    }
}

fn gpu_error(e: wgpu::Error) -> Error {
    match e {
        wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory("the GPU ran out of memory".into()),
        other => Error::DeviceLost(format!("the GPU reported an error: {other}")),
    }
}
