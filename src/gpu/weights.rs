//! The model's weights on the GPU, and how a file's bytes get there. The buffers are made from
//! the tensor table alone ([`GpuWeights::alloc`]), before any weight arrives; then the file's
//! bytes are placed as they stream in ([`Placer`]): each piece goes to the rows it belongs to,
//! padded to words on the way, q|k|v stacked, gate|up interleaved, split at binding-sized parts.
//! Only a partial row (or a small vector) is ever held back on the CPU.

use super::buffers::{interleaved_row, rows_cols, storage, GpuMatrix, Stacked};
use super::device::Gpu;
use crate::error::{Error, Result};
use crate::gguf::TensorInfo;
use crate::model::{Layer, Weights};
use crate::quant::{self, DType};

/// One layer's weights on the GPU, stacked for the fused launches.
pub(super) struct GpuLayer {
    pub attn_norm: wgpu::Buffer,
    pub qkv: Stacked,
    /// q|k|v biases (zeros where a model has none for one of them).
    pub qkv_bias: Option<wgpu::Buffer>,
    pub wo: GpuMatrix,
    pub ffn_norm: wgpu::Buffer,
    pub gate_up: GateUp,
    pub down: GpuMatrix,
    /// Per-head q and k norms (Gemma 3).
    pub qk_norm: Option<(wgpu::Buffer, wgpu::Buffer)>,
    pub post_attn_norm: Option<wgpu::Buffer>,
    pub post_ffn_norm: Option<wgpu::Buffer>,
}

/// Gate and up: one interleaved matrix whose epilogue applies SwiGLU, or, when they come in two
/// formats, a stack whose SwiGLU the down projection's prologue applies.
pub(super) enum GateUp {
    Interleaved(GpuMatrix),
    Stacked(Stacked),
}

impl GateUp {
    pub fn matrices(&self) -> Vec<&GpuMatrix> {
        match self {
            GateUp::Interleaved(m) => vec![m],
            GateUp::Stacked(s) => s.mats.iter().map(|(_, m)| m).collect(),
        }
    }
}

/// Where one tensor's bytes go.
#[derive(Clone)]
pub enum Dest {
    /// Rows of a matrix: the tensor's row `r` is the matrix's row `map(r)`.
    Rows { mat: GpuMatrix, map: RowMap },
    /// A vector, dequantized to f32 at byte `offset` of `buffer` (norms, biases).
    Vector { buffer: wgpu::Buffer, offset: u64 },
    /// Kept on the CPU (RoPE frequency factors: the tables are computed there).
    Host,
}

#[derive(Clone, Copy)]
pub enum RowMap {
    /// Row `r + k` (a matrix of its own, or its place in a stack).
    Offset(usize),
    /// The gate's (`up == false`) or up's rows of an interleaved gate|up.
    Interleave { up: bool },
}

impl RowMap {
    fn of(self, r: usize) -> usize {
        match self {
            RowMap::Offset(k) => r + k,
            RowMap::Interleave { up } => interleaved_row(r, up),
        }
    }

    /// Rows from `r` on that land next to each other (interleaved blocks are 32 rows).
    fn run(self, r: usize) -> usize {
        match self {
            RowMap::Offset(_) => usize::MAX,
            RowMap::Interleave { .. } => 32 - r % 32,
        }
    }
}

/// The model's weights on the GPU.
pub(super) struct GpuWeights {
    pub embed: GpuMatrix,
    pub layers: Vec<GpuLayer>,
    pub out_norm: wgpu::Buffer,
    /// The output projection, when not tied to the embedding.
    pub output: Option<GpuMatrix>,
}

impl GpuWeights {
    /// Every buffer the weights need, zeroed, and where each tensor's bytes go.
    pub fn alloc(gpu: &Gpu, w: &Weights<&TensorInfo>) -> Result<(GpuWeights, Weights<Dest>)> {
        let matrix = |t: &TensorInfo| -> Result<(GpuMatrix, Dest)> {
            let (rows, cols) = rows_cols(t);
            let m = GpuMatrix::alloc(gpu, &t.name, t.dtype, rows, cols)?;
            Ok((m.clone(), Dest::Rows { mat: m, map: RowMap::Offset(0) }))
        };
        let vector = |t: &TensorInfo| -> (wgpu::Buffer, Dest) {
            let buffer = storage(gpu, &t.name, t.elements() * 4);
            (buffer.clone(), Dest::Vector { buffer, offset: 0 })
        };
        let opt_vector = |t: Option<&&TensorInfo>| t.map(|t| vector(t));
        let mut layers = Vec::with_capacity(w.layers.len());
        let mut dests = Vec::with_capacity(w.layers.len());
        for (i, l) in w.layers.iter().enumerate() {
            let (qkv, qkv_places) = Stacked::alloc(gpu, &format!("blk.{i}.qkv"), &[l.wq, l.wk, l.wv])?;
            let mut qkv_dests = stack_dests(qkv_places).into_iter();
            let mut next = || qkv_dests.next().expect("three tensors, three places");
            let (wq, wk, wv) = (next(), next(), next());
            let (qkv_bias, [bq, bk, bv]) = match (&l.bq, &l.bk, &l.bv) {
                (None, None, None) => (None, [None, None, None]),
                _ => {
                    let rows = [l.wq, l.wk, l.wv].map(|t| rows_cols(t).0);
                    let buffer = storage(gpu, &format!("blk.{i}.qkv_bias"), rows.iter().sum::<usize>() as u64 * 4);
                    let at = |k: usize| Dest::Vector { buffer: buffer.clone(), offset: rows[..k].iter().sum::<usize>() as u64 * 4 };
                    let dests = [l.bq.map(|_| at(0)), l.bk.map(|_| at(1)), l.bv.map(|_| at(2))];
                    (Some(buffer), dests)
                }
            };
            let (gate_up, gate, up) = alloc_gate_up(gpu, l.w_gate, l.w_up, i)?;
            let (wo, wo_dest) = matrix(l.wo)?;
            let (down, down_dest) = matrix(l.w_down)?;
            let (attn_norm, attn_norm_dest) = vector(l.attn_norm);
            let (ffn_norm, ffn_norm_dest) = vector(l.ffn_norm);
            let (q_norm, k_norm) = (opt_vector(l.q_norm.as_ref()), opt_vector(l.k_norm.as_ref()));
            let post_attn = opt_vector(l.post_attn_norm.as_ref());
            let post_ffn = opt_vector(l.post_ffn_norm.as_ref());
            dests.push(Layer {
                attn_norm: attn_norm_dest,
                wq,
                wk,
                wv,
                wo: wo_dest,
                bq,
                bk,
                bv,
                ffn_norm: ffn_norm_dest,
                w_gate: gate,
                w_up: up,
                w_down: down_dest,
                q_norm: q_norm.as_ref().map(|(_, d)| d.clone()),
                k_norm: k_norm.as_ref().map(|(_, d)| d.clone()),
                post_attn_norm: post_attn.as_ref().map(|(_, d)| d.clone()),
                post_ffn_norm: post_ffn.as_ref().map(|(_, d)| d.clone()),
            });
            layers.push(GpuLayer {
                attn_norm,
                qkv,
                qkv_bias,
                wo,
                ffn_norm,
                gate_up,
                down,
                qk_norm: q_norm.zip(k_norm).map(|((q, _), (k, _))| (q, k)),
                post_attn_norm: post_attn.map(|(b, _)| b),
                post_ffn_norm: post_ffn.map(|(b, _)| b),
            });
        }
        let (embed, embed_dest) = matrix(w.embed)?;
        let (out_norm, out_norm_dest) = vector(w.out_norm);
        let output = w.output.map(|t| matrix(t)).transpose()?;
        let plan = Weights {
            embed: embed_dest,
            layers: dests,
            out_norm: out_norm_dest,
            output: output.as_ref().map(|(_, d)| d.clone()),
            rope_freqs: w.rope_freqs.map(|_| Dest::Host),
        };
        Ok((GpuWeights { embed, layers, out_norm, output: output.map(|(m, _)| m) }, plan))
    }

    pub fn lm_head(&self) -> &GpuMatrix {
        self.output.as_ref().unwrap_or(&self.embed)
    }

    pub fn formats(&self) -> Vec<DType> {
        let mut all = vec![self.embed.dtype];
        all.extend(self.output.iter().map(|m| m.dtype));
        for l in &self.layers {
            all.extend(l.qkv.mats.iter().map(|(_, m)| m.dtype));
            all.extend(l.gate_up.matrices().iter().map(|m| m.dtype));
            all.extend([l.wo.dtype, l.down.dtype]);
        }
        all
    }

    pub fn bytes(&self) -> u64 {
        let layer = |l: &GpuLayer| {
            let optional = l.qk_norm.iter().flat_map(|(q, k)| [q, k]);
            let vectors = [&l.attn_norm, &l.ffn_norm]
                .into_iter()
                .chain(optional)
                .chain(&l.post_attn_norm)
                .chain(&l.post_ffn_norm)
                .chain(&l.qkv_bias)
                .map(|b| b.size())
                .sum::<u64>();
            let gate_up: u64 = l.gate_up.matrices().iter().map(|m| m.bytes()).sum();
            vectors + l.qkv.bytes() + l.wo.bytes() + gate_up + l.down.bytes()
        };
        self.embed.bytes()
            + self.layers.iter().map(layer).sum::<u64>()
            + self.out_norm.size()
            + self.output.as_ref().map_or(0, GpuMatrix::bytes)
    }
}

/// The places of a stack's tensors, as destinations.
fn stack_dests(places: Vec<(GpuMatrix, usize)>) -> Vec<Dest> {
    places.into_iter().map(|(mat, at)| Dest::Rows { mat, map: RowMap::Offset(at) }).collect()
}

/// Gate and up interleaved when they share a format, else stacked; with their destinations.
fn alloc_gate_up(gpu: &Gpu, gate: &TensorInfo, up: &TensorInfo, i: usize) -> Result<(GateUp, Dest, Dest)> {
    let name = format!("blk.{i}.gate_up");
    if gate.dtype != up.dtype {
        let (s, places) = Stacked::alloc(gpu, &name, &[gate, up])?;
        let mut d = stack_dests(places).into_iter();
        let (g, u) = (d.next().expect("gate"), d.next().expect("up"));
        return Ok((GateUp::Stacked(s), g, u));
    }
    let m = GpuMatrix::alloc_interleaved(gpu, &name, gate.dtype, rows_cols(gate))?;
    let dest = |up| Dest::Rows { mat: m.clone(), map: RowMap::Interleave { up } };
    Ok((GateUp::Interleaved(m.clone()), dest(false), dest(true)))
}

/// Writes per flush: after this many bytes the queue is submitted and drained, so the driver's
/// staging copies of the writes (held until a submission completes) stay bounded.
const FLUSH_BYTES: u64 = 64 << 20;

/// Places a model's bytes into the buffers of [`GpuWeights::alloc`] as they stream in.
pub struct Placer {
    dests: Vec<(Dest, TensorInfo)>,
    /// Per tensor: the bytes of a row (or a whole vector) not complete yet.
    carry: Vec<Vec<u8>>,
    /// Per tensor: bytes received.
    got: Vec<u64>,
    /// The RoPE frequency factors, once complete.
    host: Option<(DType, Vec<u8>)>,
    staging: Vec<u8>,
    unflushed: u64,
}

impl Placer {
    /// `dests[i]` is where tensor `tensors[i]` goes.
    pub fn new(dests: Vec<(Dest, TensorInfo)>) -> Placer {
        let n = dests.len();
        Placer { dests, carry: vec![Vec::new(); n], got: vec![0; n], host: None, staging: Vec::new(), unflushed: 0 }
    }

    /// `bytes` of tensor `i`, starting `at` bytes into it (pieces of a tensor come in order).
    pub fn place(&mut self, gpu: &Gpu, i: usize, at: u64, bytes: &[u8]) -> Result<()> {
        let (dest, info) = &self.dests[i];
        if at != self.got[i] || at + bytes.len() as u64 > info.size {
            return Err(Error::BadModel(format!("{}: bytes out of order", info.name)));
        }
        self.got[i] += bytes.len() as u64;
        self.unflushed += bytes.len() as u64;
        let complete = self.got[i] == info.size;
        match dest {
            Dest::Rows { mat, map } => {
                let row = mat.src_row_bytes();
                let carry = &mut self.carry[i];
                let mut bytes = bytes;
                let mut r = (at as usize - carry.len()) / row;
                if !carry.is_empty() {
                    let take = (row - carry.len()).min(bytes.len());
                    carry.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if carry.len() < row {
                        return Ok(());
                    }
                    mat.write_rows(gpu, map.of(r), carry, &mut self.staging);
                    carry.clear();
                    r += 1;
                }
                while bytes.len() >= row {
                    let n = (bytes.len() / row).min(map.run(r));
                    mat.write_rows(gpu, map.of(r), &bytes[..n * row], &mut self.staging);
                    bytes = &bytes[n * row..];
                    r += n;
                }
                carry.extend_from_slice(bytes);
            }
            Dest::Vector { buffer, offset } => {
                self.carry[i].extend_from_slice(bytes);
                if complete {
                    let mut v = vec![0f32; info.elements() as usize];
                    quant::dequantize(info.dtype, &self.carry[i], &mut v)?;
                    gpu.queue.write_buffer(buffer, *offset, bytemuck::cast_slice(&v));
                    self.carry[i] = Vec::new();
                }
            }
            Dest::Host => {
                self.carry[i].extend_from_slice(bytes);
                if complete {
                    self.host = Some((info.dtype, std::mem::take(&mut self.carry[i])));
                }
            }
        }
        Ok(())
    }

    /// Whether enough has been written since the last flush that the queue should be drained.
    pub fn wants_flush(&self) -> bool {
        self.unflushed >= FLUSH_BYTES
    }

    /// Submit the writes so far and wait for the queue (natively; the browser's writes are
    /// copied out when made, and the map request of the next read-back orders after them).
    pub async fn flush(&mut self, gpu: &Gpu) -> Result<()> {
        self.unflushed = 0;
        gpu.queue.submit([]);
        gpu.idle().await
    }

    /// The first tensor that has not received all its bytes, if any.
    pub fn incomplete(&self) -> Option<(&str, u64, u64)> {
        self.dests.iter().zip(&self.got).find(|((_, t), &got)| got != t.size).map(|((_, t), &got)| (t.name.as_str(), got, t.size))
    }

    /// The RoPE frequency factors' format and bytes, when the model has them.
    pub fn host_bytes(&self) -> Option<(DType, &[u8])> {
        self.host.as_ref().map(|(d, b)| (*d, b.as_slice()))
    }
}
