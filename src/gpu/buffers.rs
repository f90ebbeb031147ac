//! GPU buffers: weight matrices uploaded in their GGUF block format (padded to whole words and
//! split into parts that fit one storage binding), plain f32 buffers, the arena of kernel
//! parameters, and reading results back.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::device::Gpu;
use crate::error::{Error, Result};
use crate::gguf::{TensorInfo, TensorView};
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
        let pad = [0u8; 4];
        for block in src.chunks_exact(self.src_bytes) {
            dst.extend_from_slice(&block[..self.pad_at]);
            dst.extend_from_slice(&pad[..self.dst_bytes - self.src_bytes]);
            dst.extend_from_slice(&block[self.pad_at..]);
        }
    }
}

/// A weight matrix (`rows` outputs × `cols` inputs) on the GPU, still quantized. Its buffers are
/// made first ([`GpuMatrix::alloc`]) and filled by rows as the file's bytes arrive
/// ([`GpuMatrix::write_rows`]), so a streamed load never holds a whole matrix on the CPU.
#[derive(Clone)]
pub struct GpuMatrix {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub row_words: usize,
    pub parts: Vec<MatrixPart>,
}

/// Rows `row0 .. row0 + rows` of a matrix, in a buffer that fits one storage binding.
#[derive(Clone)]
pub struct MatrixPart {
    pub buffer: wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
}

impl GpuMatrix {
    /// Upload a 2-D GGUF tensor.
    pub fn upload(gpu: &Gpu, t: &TensorView) -> Result<GpuMatrix> {
        let (rows, cols) = rows_cols(t.info);
        GpuMatrix::new(gpu, &t.info.name, t.info.dtype, rows, cols, t.data)
    }

    /// Upload `rows × cols` values in `dtype`'s GGUF layout.
    pub fn new(gpu: &Gpu, name: &str, dtype: DType, rows: usize, cols: usize, data: &[u8]) -> Result<GpuMatrix> {
        let m = GpuMatrix::alloc(gpu, name, dtype, rows, cols)?;
        if data.len() != m.src_row_bytes() * rows {
            return Err(Error::BadModel(format!("{name}: {} bytes for {rows} × {cols} {}", data.len(), dtype.name())));
        }
        m.write_rows(gpu, 0, data, &mut Vec::new());
        Ok(m)
    }

    /// The buffers of `rows × cols` values in `dtype` (zeros until written). Rows must be whole
    /// groups of 32 values (every kernel reads eighths of such groups).
    pub fn alloc(gpu: &Gpu, name: &str, dtype: DType, rows: usize, cols: usize) -> Result<GpuMatrix> {
        let (row_words, rows_per_part) = part_rows(gpu.max_binding, name, dtype, rows, cols)?;
        let row_bytes = row_words as u64 * 4;
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let n = rows_per_part.min(rows - row0);
            let buffer = storage(gpu, &format!("{name}[{row0}..]"), n as u64 * row_bytes);
            parts.push(MatrixPart { buffer, row0, rows: n });
            row0 += n;
        }
        Ok(GpuMatrix { dtype, rows, cols, row_words, parts })
    }

    /// Bytes of one row in the file.
    pub fn src_row_bytes(&self) -> usize {
        self.cols / GpuLayout::of(self.dtype).block_elems * GpuLayout::of(self.dtype).src_bytes
    }

    /// Write rows `row0 ..` from `src` (whole rows in the GGUF layout), padded to words through
    /// `staging` where the format needs it.
    pub fn write_rows(&self, gpu: &Gpu, row0: usize, src: &[u8], staging: &mut Vec<u8>) {
        let layout = GpuLayout::of(self.dtype);
        let src_row = self.src_row_bytes();
        let row_bytes = self.row_words * 4;
        let end = row0 + src.len() / src_row;
        debug_assert!(src.len().is_multiple_of(src_row) && end <= self.rows);
        for p in &self.parts {
            let (a, b) = (row0.max(p.row0), end.min(p.row0 + p.rows));
            if a >= b {
                continue;
            }
            let rows = &src[(a - row0) * src_row..(b - row0) * src_row];
            let at = ((a - p.row0) * row_bytes) as u64;
            if layout.src_bytes == layout.dst_bytes {
                gpu.queue.write_buffer(&p.buffer, at, rows);
            } else {
                staging.clear();
                layout.repack(rows, staging);
                gpu.queue.write_buffer(&p.buffer, at, staging);
            }
        }
    }

    /// Gate and up (`rows × cols` each, in one format) as one matrix, their rows interleaved
    /// in blocks of 32: gate 0..32, up 0..32, gate 32..64, … What the matmul's SwiGLU epilogue
    /// reads ([`interleaved_row`] maps the rows).
    pub fn alloc_interleaved(gpu: &Gpu, name: &str, dtype: DType, (rows, cols): (usize, usize)) -> Result<GpuMatrix> {
        if rows % 32 != 0 {
            return Err(Error::UnsupportedModel(format!(
                "{name}: gate and up of {rows} rows; the GPU kernels need whole blocks of 32 rows"
            )));
        }
        let m = GpuMatrix::alloc(gpu, name, dtype, 2 * rows, cols)?;
        // The epilogue pairs rows within blocks of 64: a part must not cut a block.
        if m.parts.iter().any(|p| p.row0 % 64 != 0) {
            return Err(Error::UnsupportedModel(format!(
                "{name}: a row of {} bytes leaves fewer than 64 rows to a storage binding",
                m.src_row_bytes()
            )));
        }
        Ok(m)
    }

    /// [`GpuMatrix::alloc_interleaved`], filled from the whole gate and up.
    pub fn interleaved(
        gpu: &Gpu,
        name: &str,
        dtype: DType,
        (rows, cols): (usize, usize),
        gate: &[u8],
        up: &[u8],
    ) -> Result<GpuMatrix> {
        let m = GpuMatrix::alloc_interleaved(gpu, name, dtype, (rows, cols))?;
        let block = 32 * m.src_row_bytes();
        if gate.len() != rows * m.src_row_bytes() || up.len() != gate.len() {
            return Err(Error::BadModel(format!("{name}: gate and up of {} and {} bytes", gate.len(), up.len())));
        }
        let mut staging = Vec::new();
        for (b, (g, u)) in gate.chunks(block).zip(up.chunks(block)).enumerate() {
            m.write_rows(gpu, 64 * b, g, &mut staging);
            m.write_rows(gpu, 64 * b + 32, u, &mut staging);
        }
        Ok(m)
    }

    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.size()).sum()
    }
}

/// Where row `r` of gate (`up == false`) or up lands in the interleaved gate|up matrix.
pub fn interleaved_row(r: usize, up: bool) -> usize {
    r / 32 * 64 + if up { 32 } else { 0 } + r % 32
}

/// Rows and columns of a 2-D tensor.
pub fn rows_cols(t: &TensorInfo) -> (usize, usize) {
    let cols = t.dims[0] as usize;
    (t.elements() as usize / cols, cols)
}

/// Words per row, and rows per part (at most one storage binding of `max_binding` bytes, whole
/// blocks of 64 rows so parts keep the interleaved gate|up blocks whole).
pub fn part_rows(max_binding: u64, name: &str, dtype: DType, rows: usize, cols: usize) -> Result<(usize, usize)> {
    if !cols.is_multiple_of(32) || rows == 0 {
        return Err(Error::UnsupportedModel(format!(
            "{name}: rows of {cols} values; the GPU kernels need a multiple of 32"
        )));
    }
    let row_words = GpuLayout::of(dtype).row_words(cols);
    let row_bytes = row_words as u64 * 4;
    let mut rows_per_part = (max_binding / row_bytes) as usize;
    if rows_per_part >= 64 {
        rows_per_part -= rows_per_part % 64;
    }
    if rows_per_part == 0 {
        return Err(Error::UnsupportedModel(format!(
            "{name}: one row takes {row_bytes} bytes, more than a storage binding ({max_binding} bytes)"
        )));
    }
    Ok((row_words, rows_per_part))
}

/// Matrices whose outputs lie side by side in one activation row (q|k|v, gate|up). Neighbours
/// of one format are one matrix, so one dispatch computes them all.
pub struct Stacked {
    /// Each matrix with its first row in the stack.
    pub mats: Vec<(usize, GpuMatrix)>,
    /// Rows of the whole stack: the activation row's width.
    pub rows: usize,
}

impl Stacked {
    /// The buffers of 2-D tensors of the same width as one stack; for each tensor, the matrix it
    /// goes into and the row it starts at there.
    pub fn alloc(gpu: &Gpu, name: &str, tensors: &[&TensorInfo]) -> Result<(Stacked, Vec<(GpuMatrix, usize)>)> {
        let mut mats = Vec::new();
        let mut places = Vec::new();
        let mut row0 = 0;
        for run in tensors.chunk_by(|a, b| a.dtype == b.dtype) {
            let cols = run[0].dims[0] as usize;
            let rows: usize = run.iter().map(|t| rows_cols(t).0).sum();
            let m = GpuMatrix::alloc(gpu, name, run[0].dtype, rows, cols)?;
            let mut at = 0;
            for t in run {
                places.push((m.clone(), at));
                at += rows_cols(t).0;
            }
            mats.push((row0, m));
            row0 += rows;
        }
        Ok((Stacked { mats, rows: row0 }, places))
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
    let (send, mapped) = signal();
    buffer.map_async(wgpu::MapMode::Read, ..size, move |result| {
        send(result.map_err(|e| Error::DeviceLost(format!("reading GPU results failed: {e}"))))
    });
    gpu.wait()?;
    mapped.await?;
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

/// A value handed from a wgpu callback to a future: the callback runs at once natively (after
/// `wait`), later in the browser.
pub(super) fn signal<T: Send + 'static>() -> (impl FnOnce(T) + Send + 'static, impl Future<Output = T>) {
    struct State<T> {
        value: Option<T>,
        waker: Option<Waker>,
    }
    let state = Arc::new(Mutex::new(State { value: None, waker: None }));
    let sender = state.clone();
    let send = move |value: T| {
        let mut s = sender.lock().unwrap_or_else(|e| e.into_inner());
        s.value = Some(value);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    };
    let wait = std::future::poll_fn(move |cx: &mut Context<'_>| {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    });
    (send, wait)
}
