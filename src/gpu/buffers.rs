//! GPU buffers: weight matrices uploaded in their GGUF block format (padded to whole words and
//! split into parts that fit one storage binding), plain f32 buffers, the arena of kernel
//! parameters, and reading results back.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::device::Gpu;
use crate::error::{Error, Result};
use crate::gguf::TensorView;
use crate::quant::DType;

/// How a block format sits in GPU memory: GGUF's blocks, padded so every block starts on a
/// word (the kernels read `array<u32>`). `pad_at` is where in the block the padding goes: after
/// the f16 scale for Q4_0 / Q5_0 / Q8_0 (so the quants are word-aligned), at the end for Q6_K.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuLayout {
    pub block_elems: usize,
    pub src_bytes: usize,
    pub dst_bytes: usize,
    pub pad_at: usize,
}

impl GpuLayout {
    pub fn of(dtype: DType) -> GpuLayout {
        let (block_elems, src_bytes) = match dtype {
            // Plain floats: one "block" per pair of values keeps rows whole words.
            DType::F32 => (1, 4),
            DType::F16 | DType::BF16 => (2, 4),
            d => (d.block_elems(), d.block_bytes()),
        };
        let dst_bytes = src_bytes.div_ceil(4) * 4;
        let pad_at = match dtype {
            DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => 2,
            _ => src_bytes,
        };
        GpuLayout { block_elems, src_bytes, dst_bytes, pad_at }
    }

    /// Words per row of `cols` values.
    pub fn row_words(&self, cols: usize) -> usize {
        cols / self.block_elems * self.dst_bytes / 4
    }

    /// Append the GPU form of whole blocks `src` to `dst`.
    fn repack(&self, src: &[u8], dst: &mut Vec<u8>) {
        if self.src_bytes == self.dst_bytes {
            dst.extend_from_slice(src);
            return;
        }
        let pad = [0u8; 4];
        for block in src.chunks_exact(self.src_bytes) {
            dst.extend_from_slice(&block[..self.pad_at]);
            dst.extend_from_slice(&pad[..self.dst_bytes - self.src_bytes]);
            dst.extend_from_slice(&block[self.pad_at..]);
        }
    }
}

/// A weight matrix (`rows` outputs × `cols` inputs) on the GPU, still quantized.
pub struct GpuMatrix {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub row_words: usize,
    pub parts: Vec<MatrixPart>,
}

/// Rows `row0 .. row0 + rows` of a matrix, in a buffer that fits one storage binding.
pub struct MatrixPart {
    pub buffer: wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
}

impl GpuMatrix {
    /// Upload a 2-D GGUF tensor.
    pub fn upload(gpu: &Gpu, t: &TensorView) -> Result<GpuMatrix> {
        let cols = t.info.dims[0] as usize;
        let rows = (t.info.elements() as usize) / cols;
        GpuMatrix::new(gpu, &t.info.name, t.info.dtype, rows, cols, t.data)
    }

    /// Upload `rows × cols` values in `dtype`'s GGUF layout. Rows must be whole groups of 32
    /// values (every kernel reads eighths of such groups).
    pub fn new(gpu: &Gpu, name: &str, dtype: DType, rows: usize, cols: usize, data: &[u8]) -> Result<GpuMatrix> {
        if cols % 32 != 0 || rows == 0 {
            return Err(Error::UnsupportedModel(format!(
                "{name}: rows of {cols} values; the GPU kernels need a multiple of 32"
            )));
        }
        let layout = GpuLayout::of(dtype);
        let row_words = layout.row_words(cols);
        let row_bytes = row_words as u64 * 4;
        let src_row = dtype.bytes_for(cols as u64)? as usize;
        if data.len() != src_row * rows {
            return Err(Error::BadModel(format!("{name}: {} bytes for {rows} × {cols} {}", data.len(), dtype.name())));
        }
        let mut rows_per_part = (gpu.max_binding / row_bytes) as usize;
        // Parts of whole blocks of 64 rows keep the interleaved gate|up blocks whole.
        if rows_per_part >= 64 {
            rows_per_part -= rows_per_part % 64;
        }
        if rows_per_part == 0 {
            return Err(Error::UnsupportedModel(format!(
                "{name}: one row takes {row_bytes} bytes, more than a storage binding ({} bytes)",
                gpu.max_binding
            )));
        }
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let n = rows_per_part.min(rows - row0);
            let mut bytes = Vec::with_capacity(n * row_bytes as usize);
            layout.repack(&data[row0 * src_row..(row0 + n) * src_row], &mut bytes);
            let buffer = storage_with(gpu, &format!("{name}[{row0}..]"), &bytes);
            parts.push(MatrixPart { buffer, row0, rows: n });
            row0 += n;
        }
        Ok(GpuMatrix { dtype, rows, cols, row_words, parts })
    }

    /// Gate and up (`rows × cols` each, in one format) as one matrix, their rows interleaved
    /// in blocks of 32: gate 0..32, up 0..32, gate 32..64, … What the matmul's SwiGLU epilogue
    /// reads.
    pub fn interleaved(
        gpu: &Gpu,
        name: &str,
        dtype: DType,
        (rows, cols): (usize, usize),
        gate: &[u8],
        up: &[u8],
    ) -> Result<GpuMatrix> {
        let row_bytes = dtype.bytes_for(cols as u64)? as usize;
        if rows % 32 != 0 || gate.len() != rows * row_bytes || up.len() != gate.len() {
            return Err(Error::UnsupportedModel(format!(
                "{name}: gate and up of {rows} rows ({} and {} bytes); the GPU kernels need whole blocks of 32 rows",
                gate.len(),
                up.len()
            )));
        }
        let block = 32 * row_bytes;
        let mut data = Vec::with_capacity(2 * gate.len());
        for (g, u) in gate.chunks(block).zip(up.chunks(block)) {
            data.extend_from_slice(g);
            data.extend_from_slice(u);
        }
        let m = GpuMatrix::new(gpu, name, dtype, 2 * rows, cols, &data)?;
        // The epilogue pairs rows within blocks of 64: a part must not cut a block.
        if m.parts.iter().any(|p| p.row0 % 64 != 0) {
            return Err(Error::UnsupportedModel(format!(
                "{name}: a row of {row_bytes} bytes leaves fewer than 64 rows to a storage binding"
            )));
        }
        Ok(m)
    }

    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.size()).sum()
    }
}

/// Matrices whose outputs lie side by side in one activation row (q|k|v, gate|up). Neighbours
/// of one format are uploaded as one matrix, so one dispatch computes them all.
pub struct Stacked {
    /// Each matrix with its first row in the stack.
    pub mats: Vec<(usize, GpuMatrix)>,
    /// Rows of the whole stack: the activation row's width.
    pub rows: usize,
}

impl Stacked {
    /// Upload 2-D GGUF tensors of the same width as one stack.
    pub fn upload(gpu: &Gpu, name: &str, tensors: &[&TensorView]) -> Result<Stacked> {
        let mut mats = Vec::new();
        let mut row0 = 0;
        for run in tensors.chunk_by(|a, b| a.info.dtype == b.info.dtype) {
            let cols = run[0].info.dims[0] as usize;
            let rows: usize = run.iter().map(|t| t.info.elements() as usize / cols).sum();
            let data = run.iter().map(|t| t.data).collect::<Vec<_>>().concat();
            mats.push((row0, GpuMatrix::new(gpu, name, run[0].info.dtype, rows, cols, &data)?));
            row0 += rows;
        }
        Ok(Stacked { mats, rows: row0 })
    }

    pub fn bytes(&self) -> u64 {
        self.mats.iter().map(|(_, m)| m.bytes()).sum()
    }
}

/// A storage buffer holding `bytes` (at least 4 bytes: WebGPU has no empty bindings).
pub fn storage_with(gpu: &Gpu, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    let buffer = storage(gpu, label, bytes.len() as u64);
    if !bytes.is_empty() {
        gpu.queue.write_buffer(&buffer, 0, bytes);
    }
    buffer
}

/// A zeroed storage buffer of `size` bytes that can be copied to and from.
pub fn storage(gpu: &Gpu, label: &str, size: u64) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: size.max(4).div_ceil(4) * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// A buffer the CPU reads results from.
pub fn staging(gpu: &Gpu, size: u64) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read-back"),
        size: size.max(4).div_ceil(4) * 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Every kernel's parameters in one uniform buffer, each at its own aligned offset.
pub struct ParamArena {
    bytes: Vec<u8>,
    align: usize,
}

/// Where one kernel's parameters live in the arena.
#[derive(Clone, Copy, Debug)]
pub struct ParamSlot {
    pub offset: u64,
    pub size: u64,
}

impl ParamArena {
    pub fn new(gpu: &Gpu) -> ParamArena {
        ParamArena { bytes: Vec::new(), align: gpu.uniform_align.max(16) as usize }
    }

    /// Add a struct of u32/f32 fields (16-byte multiple, as WGSL's uniform layout wants).
    pub fn push<T: bytemuck::Pod>(&mut self, value: &T) -> ParamSlot {
        let offset = self.bytes.len().div_ceil(self.align) * self.align;
        self.bytes.resize(offset, 0);
        self.bytes.extend_from_slice(bytemuck::bytes_of(value));
        let size = std::mem::size_of::<T>().div_ceil(16) * 16;
        self.bytes.resize(offset + size, 0);
        ParamSlot { offset: offset as u64, size: size as u64 }
    }

    pub fn upload(&self, gpu: &Gpu) -> wgpu::Buffer {
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel parameters"),
            size: (self.bytes.len().max(16)) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue.write_buffer(&buffer, 0, &self.bytes);
        buffer
    }
}

/// Read `size` bytes (a multiple of 4) of a MAP_READ buffer, as words, once the queue has
/// finished with it.
pub async fn read_back(gpu: &Gpu, buffer: &wgpu::Buffer, size: u64) -> Result<Vec<u32>> {
    let slot: Arc<Mutex<MapState>> = Arc::new(Mutex::new(MapState::default()));
    let done = slot.clone();
    buffer.map_async(wgpu::MapMode::Read, ..size, move |result| {
        let mut s = done.lock().unwrap_or_else(|e| e.into_inner());
        s.result = Some(result.map_err(|e| Error::DeviceLost(format!("reading GPU results failed: {e}"))));
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    });
    gpu.wait()?;
    MapFuture(slot).await?;
    let words = {
        let view = buffer
            .get_mapped_range(..size)
            .map_err(|e| Error::DeviceLost(format!("reading GPU results failed: {e}")))?;
        bytemuck::pod_collect_to_vec::<u8, u32>(&view)
    };
    buffer.unmap();
    gpu.check()?;
    Ok(words)
}

#[derive(Default)]
struct MapState {
    result: Option<Result<()>>,
    waker: Option<Waker>,
}

/// Resolves when the map callback has run (at once natively, after `wait`).
struct MapFuture(Arc<Mutex<MapState>>);

impl Future for MapFuture {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
