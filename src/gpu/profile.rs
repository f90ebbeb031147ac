//! `webgpu-llm bench --kernels`: every kernel of a step timed alone on the model's real
//! shapes, with the bytes it must move and the arithmetic it does, beside the adapter's
//! measured bandwidth (a buffer copy, and a kernel that reads and writes, timed the same way).
//! The host clock times `reps` launches recorded into one submission, so each figure includes
//! the barriers between launches that a real step has. Native only (the browser cannot block).

use std::time::{Duration, Instant};

use super::buffers::storage;
use super::device::Gpu;
use super::kernels::{grid, Family, Slot};
use super::ops::{Launch, Work};
use crate::error::Result;

/// How long each measurement aims to run.
const TARGET: Duration = Duration::from_millis(200);
/// The most launches one measurement records.
const MAX_REPS: u32 = 2000;
/// The bandwidth buffers: 256 MiB each (less where a binding must be smaller).
const BANDWIDTH_BYTES: u64 = 256 << 20;

/// One kernel shape of a step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelRow {
    /// The entry point, and its weight format and shape (`rows×cols`) or head geometry.
    pub kernel: String,
    /// Launches of this shape in the step (one per layer, say).
    pub launches: usize,
    pub us_per_launch: f64,
    pub bytes_per_launch: u64,
    pub flop_per_launch: u64,
    pub gb_per_s: f64,
    pub gflop_per_s: f64,
}

/// One step's kernels.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepProfile {
    pub tokens: u32,
    /// Cached positions before the step.
    pub context: u32,
    /// The kernels, slowest in all first.
    pub kernels: Vec<KernelRow>,
    /// The sum over every launch of the step: what the step would take with each kernel alone.
    pub step_us: f64,
    pub step_bytes: u64,
    /// Bytes the step moves ÷ `step_us`.
    pub gb_per_s: f64,
}

/// The adapter's bandwidth: bytes read plus bytes written per second.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Bandwidth {
    /// The buffer size copied.
    pub bytes: u64,
    /// `copy_buffer_to_buffer`.
    pub copy_gb_per_s: f64,
    /// `shaders/copy.wgsl`: a kernel that reads and writes 16 bytes an invocation.
    pub kernel_gb_per_s: f64,
}

/// Time `launches` (one step's, in order) for a step of `n` tokens after `context` cached
/// positions; the step's inputs (tokens, places, `n`) must already be written. Launches of the
/// same entry and shape are timed once and counted for each.
pub(super) fn profile_step(gpu: &Gpu, launches: &[&Launch], n: u32, context: u32) -> Result<StepProfile> {
    let kv_bytes = if gpu.f16 { 2 } else { 4 };
    let mut groups: Vec<(String, &Launch, usize)> = Vec::new();
    for &l in launches {
        let key = describe(l, n);
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.2 += 1,
            None => groups.push((key, l, 1)),
        }
    }
    let mut kernels = Vec::new();
    for (kernel, launch, count) in groups {
        let secs = time(gpu, |pass| {
            launch.record(pass, n);
        })?;
        let (bytes, flop) = launch.cost(n, context, kv_bytes);
        kernels.push(KernelRow {
            kernel,
            launches: count,
            us_per_launch: secs * 1e6,
            bytes_per_launch: bytes,
            flop_per_launch: flop,
            gb_per_s: bytes as f64 / secs / 1e9,
            gflop_per_s: flop as f64 / secs / 1e9,
        });
    }
    kernels.sort_by(|a, b| (b.us_per_launch * b.launches as f64).total_cmp(&(a.us_per_launch * a.launches as f64)));
    let step_us = kernels.iter().map(|k| k.us_per_launch * k.launches as f64).sum::<f64>();
    let step_bytes = kernels.iter().map(|k| k.bytes_per_launch * k.launches as u64).sum::<u64>();
    Ok(StepProfile { tokens: n, context, kernels, step_us, step_bytes, gb_per_s: step_bytes as f64 / step_us / 1e3 })
}

/// The entry point a step of `n` tokens runs, with what it works on.
fn describe(l: &Launch, n: u32) -> String {
    let entry = l.entry(n);
    match l.work {
        Work::Matmul { rows, cols, dtype, .. } => format!("{entry} {dtype} {rows}×{cols}"),
        Work::Attention { n_heads, n_kv_heads, head_dim, window: 0 } => {
            format!("{entry} {n_heads}/{n_kv_heads} heads × {head_dim}")
        }
        Work::Attention { n_heads, n_kv_heads, head_dim, window } => {
            format!("{entry} {n_heads}/{n_kv_heads} heads × {head_dim}, window {window}")
        }
        Work::Rows { floats } => format!("{entry} ({floats} floats a token)"),
    }
}

/// Seconds per launch: once to warm up and estimate, then the best of three runs of as many
/// launches as fill [`TARGET`].
fn time(gpu: &Gpu, record: impl Fn(&mut wgpu::ComputePass)) -> Result<f64> {
    let run = |reps: u32| -> Result<f64> {
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for _ in 0..reps {
                record(&mut pass);
            }
        }
        let started = Instant::now();
        gpu.queue.submit([encoder.finish()]);
        gpu.wait()?;
        Ok(started.elapsed().as_secs_f64() / reps as f64)
    };
    best_of_three(run)
}

/// `run(reps)` sized from one warm-up run, best of three.
fn best_of_three(run: impl Fn(u32) -> Result<f64>) -> Result<f64> {
    let once = run(1)?;
    let reps = (TARGET.as_secs_f64() / once.max(1e-7)).clamp(1.0, MAX_REPS as f64) as u32;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(run(reps)?);
    }
    Ok(best)
}

/// Measure the adapter's bandwidth with two buffers of up to [`BANDWIDTH_BYTES`].
pub async fn bandwidth(gpu: &Gpu) -> Result<Bandwidth> {
    // Whole workgroups of 256 × 16 bytes.
    let bytes = BANDWIDTH_BYTES.min(gpu.max_binding) / 4096 * 4096;
    let (src, dst) =
        gpu.scoped("the bandwidth buffers", || (storage(gpu, "src", bytes), storage(gpu, "dst", bytes))).await?;
    let family =
        Family::new(gpu, "copy", include_str!("../../shaders/copy.wgsl"), &[Slot::Read, Slot::Write], &["copy"]);
    let bind = family.bind(gpu, &[src.as_entire_binding(), dst.as_entire_binding()]);
    let (x, y) = grid((bytes / 4096) as u32);
    let kernel = time(gpu, |pass| {
        pass.set_pipeline(family.pipeline("copy"));
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(x, y, 1);
    })?;
    let copy = best_of_three(|reps| {
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        for _ in 0..reps {
            encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes);
        }
        let started = Instant::now();
        gpu.queue.submit([encoder.finish()]);
        gpu.wait()?;
        Ok(started.elapsed().as_secs_f64() / reps as f64)
    })?;
    let rate = |secs: f64| 2.0 * bytes as f64 / secs / 1e9;
    Ok(Bandwidth { bytes, copy_gb_per_s: rate(copy), kernel_gb_per_s: rate(kernel) })
}
