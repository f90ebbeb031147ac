//! Synthetic GGUF models: a real model's shape (hyper-parameters, tensor names and sizes) with
//! random weights and a small valid byte-level BPE vocabulary, for tests and measurements at a
//! real scale without downloading anything (`webgpu-llm synth`).
//!
//! The file is streamed: the header (metadata and tensor table, a few MB for a 150k-token
//! vocabulary) is built in memory, then each tensor's bytes are generated a chunk at a time and
//! written out, so a 16 GB file needs a few MB of memory.
//!
//! What is in it, and why:
//! - The metadata keys and tensor names are the ones llama.cpp's `convert_hf_to_gguf.py` writes
//!   for these models (`llama.*` / `qwen2.*`, `blk.N.attn_q.weight`, …). Llama 3.x shapes get
//!   `rope_freqs.weight`, the llama3 RoPE scaling factors computed as the converter does.
//! - Norm weights, biases and `rope_freqs` are F32 (as in llama.cpp's files); every matrix is in
//!   the chosen type, the token embedding and an untied `output.weight` included (a "pure"
//!   quantization, as `llama-quantize --pure`). Blocks are generated directly, not quantized
//!   from floats: random quants under f16 scales chosen so each weight has a standard deviation
//!   of about 0.02 (the initialization scale of these models), which keeps the residual stream
//!   and the logits finite and spread out.
//! - Q4_K needs rows of 256 values. A matrix whose row is not a multiple of that (SmolLM2's 576)
//!   falls back to Q5_0, as llama.cpp's quantizer does for Q4_K (`llama_tensor_get_type`: Q4_K →
//!   Q5_0, then F16 if even that does not divide the row). The token embedding stays Q4_K when it
//!   can, as in llama.cpp's Q4_K_M files.
//! - The vocabulary has exactly `vocab_size` entries (llama.cpp requires the token count to equal
//!   the embedding's rows): the 256 GPT-2 byte tokens, a few hundred merges learnt from a short
//!   English text (each merge's parts and result are tokens, ranks in the order they were
//!   learnt), the family's special tokens as control tokens at their real ids where practical,
//!   and `<|reserved_N|>` fillers typed UNUSED (as the converter types its padding tokens).
//! - Each tensor's random stream is seeded from `--seed` and the tensor's name, so a file with
//!   fewer layers holds exactly the first layers of the full one.

use std::io::Write;

use half::f16;
use web_time::Instant;

use crate::error::{Error, Result};
use crate::gguf::writer::{put_str, put_value, type_id};
use crate::gguf::Value;
use crate::quant::DType;

const ALIGNMENT: u64 = 32;
/// Standard deviation of the matrices' weights.
const WEIGHT_STD: f64 = 0.02;

/// Llama 3's RoPE scaling (`rope_scaling` with `rope_type: llama3` in the HF config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3Rope {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_context: f64,
}

/// Which tokenizer family a shape's vocabulary imitates (special tokens and their ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    SmolLm,
    Llama3,
    Qwen2,
}

/// A real model's architecture and hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub name: &'static str,
    /// `general.architecture`: "llama" or "qwen2".
    pub arch: &'static str,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub tied_embeddings: bool,
    pub attn_bias: bool,
    pub rope_scaling: Option<Llama3Rope>,
    /// `<arch>.attention.key_length` / `value_length` are written (files whose HF config names
    /// `head_dim`).
    pub explicit_head_dim: bool,
    pub family: Family,
}

const LLAMA31_ROPE: Llama3Rope =
    Llama3Rope { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_context: 8192.0 };

/// The shapes `webgpu-llm synth` knows, with their models' real hyper-parameters.
pub const SHAPES: &[Shape] = &[
    Shape {
        name: "smollm2-135m",
        arch: "llama",
        d_model: 576,
        n_layers: 30,
        n_heads: 9,
        n_kv_heads: 3,
        head_dim: 64,
        ffn_dim: 1536,
        vocab_size: 49152,
        context_length: 8192,
        rope_base: 100_000.0,
        rms_eps: 1e-5,
        tied_embeddings: true,
        attn_bias: false,
        rope_scaling: None,
        explicit_head_dim: false,
        family: Family::SmolLm,
    },
    Shape {
        name: "llama-3.2-1b",
        arch: "llama",
        d_model: 2048,
        n_layers: 16,
        n_heads: 32,
        n_kv_heads: 8,
        head_dim: 64,
        ffn_dim: 8192,
        vocab_size: 128_256,
        context_length: 131_072,
        rope_base: 500_000.0,
        rms_eps: 1e-5,
        tied_embeddings: true,
        attn_bias: false,
        rope_scaling: Some(Llama3Rope { factor: 32.0, ..LLAMA31_ROPE }),
        explicit_head_dim: true,
        family: Family::Llama3,
    },
    Shape {
        name: "llama-3.1-8b",
        arch: "llama",
        d_model: 4096,
        n_layers: 32,
        n_heads: 32,
        n_kv_heads: 8,
        head_dim: 128,
        ffn_dim: 14336,
        vocab_size: 128_256,
        context_length: 131_072,
        rope_base: 500_000.0,
        rms_eps: 1e-5,
        tied_embeddings: false,
        attn_bias: false,
        rope_scaling: Some(LLAMA31_ROPE),
        explicit_head_dim: false,
        family: Family::Llama3,
    },
    Shape {
        name: "qwen2.5-7b",
        arch: "qwen2",
        d_model: 3584,
        n_layers: 28,
        n_heads: 28,
        n_kv_heads: 4,
        head_dim: 128,
        ffn_dim: 18944,
        vocab_size: 152_064,
        context_length: 32768,
        rope_base: 1_000_000.0,
        rms_eps: 1e-6,
        tied_embeddings: false,
        attn_bias: true,
        rope_scaling: None,
        explicit_head_dim: false,
        family: Family::Qwen2,
    },
];

/// The shape called `name`.
pub fn shape(name: &str) -> Result<&'static Shape> {
    SHAPES.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = SHAPES.iter().map(|s| s.name).collect();
        Error::InvalidArgument(format!("unknown shape {name:?} (known: {})", names.join(", ")))
    })
}

/// The type of the matrices.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    Q4_0,
    Q4_K,
    Q8_0,
    F16,
}

impl Quant {
    pub const ALL: [Quant; 4] = [Quant::Q4_0, Quant::Q4_K, Quant::Q8_0, Quant::F16];

    pub fn parse(name: &str) -> Result<Quant> {
        Quant::ALL.into_iter().find(|q| q.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
            Error::InvalidArgument(format!("unknown quantization {name:?} (known: Q4_0, Q4_K, Q8_0, F16)"))
        })
    }

    pub fn name(self) -> &'static str {
        self.dtype().name()
    }

    pub fn dtype(self) -> DType {
        match self {
            Quant::Q4_0 => DType::Q4_0,
            Quant::Q4_K => DType::Q4_K,
            Quant::Q8_0 => DType::Q8_0,
            Quant::F16 => DType::F16,
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`): MOSTLY_Q4_0 = 2, MOSTLY_Q8_0 = 7,
    /// MOSTLY_F16 = 1, and MOSTLY_Q4_K_S = 14 for Q4_K (the file type whose tensors are Q4_K;
    /// there is no plain "Q4_K" file type).
    pub fn file_type(self) -> u32 {
        match self {
            Quant::F16 => 1,
            Quant::Q4_0 => 2,
            Quant::Q8_0 => 7,
            Quant::Q4_K => 14,
        }
    }

    /// The type of a matrix whose rows hold `row` values: the chosen one, or llama.cpp's
    /// fallback when the row is not a whole number of its blocks.
    pub fn dtype_for_row(self, row: u64) -> DType {
        let fits = |t: DType| row.is_multiple_of(t.block_elems() as u64);
        let t = self.dtype();
        if fits(t) {
            return t;
        }
        if t == DType::Q4_K && fits(DType::Q5_0) {
            return DType::Q5_0;
        }
        DType::F16
    }
}

/// What a synthetic file is: a shape, the matrices' type, the seed and the layer count.
#[derive(Clone, Debug)]
pub struct Spec {
    pub shape: &'static Shape,
    pub quant: Quant,
    pub seed: u64,
    pub layers: usize,
}

/// How a tensor's values are made.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fill {
    /// Random blocks (or F16 values) with weights of standard deviation [`WEIGHT_STD`].
    Matrix,
    /// 1 + N(0, 0.05²), F32.
    Norm,
    /// N(0, 0.02²), F32.
    Bias,
    /// The llama3 RoPE factors, F32.
    RopeFreqs,
}

/// One tensor of the file, before it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorPlan {
    pub name: String,
    /// ggml order: `dims[0]` is a row's length.
    pub dims: Vec<u64>,
    pub dtype: DType,
    fill: Fill,
}

impl TensorPlan {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of data.
    pub fn size(&self) -> u64 {
        self.elements() / self.dtype.block_elems() as u64 * self.dtype.block_bytes() as u64
    }
}

/// What [`Spec::write`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    pub bytes: u64,
    pub tensors: usize,
    pub secs: f64,
}

impl Spec {
    /// `shape` at its full depth, seed 0.
    pub fn new(shape_name: &str, quant: Quant) -> Result<Spec> {
        let shape = shape(shape_name)?;
        Ok(Spec { shape, quant, seed: 0, layers: shape.n_layers })
    }

    pub fn with_seed(mut self, seed: u64) -> Spec {
        self.seed = seed;
        self
    }

    /// Fewer (or more) layers of the same width.
    pub fn with_layers(mut self, layers: usize) -> Result<Spec> {
        if layers == 0 || layers > 1024 {
            return Err(Error::InvalidArgument(format!("layers must be 1 to 1024, got {layers}")));
        }
        self.layers = layers;
        Ok(self)
    }

    /// `general.name`.
    pub fn name(&self) -> String {
        let depth = match self.layers == self.shape.n_layers {
            true => String::new(),
            false => format!(", {} layers", self.layers),
        };
        format!("synthetic {} {}{depth}", self.shape.name, self.quant.name())
    }

    /// The tensors, in file order.
    pub fn tensors(&self) -> Vec<TensorPlan> {
        let s = self.shape;
        let (d, q, kv, f, v) = (
            s.d_model as u64,
            (s.n_heads * s.head_dim) as u64,
            (s.n_kv_heads * s.head_dim) as u64,
            s.ffn_dim as u64,
            s.vocab_size as u64,
        );
        let matrix = |name: String, row: u64, rows: u64| TensorPlan {
            name,
            dims: vec![row, rows],
            dtype: self.quant.dtype_for_row(row),
            fill: Fill::Matrix,
        };
        let vector = |name: String, len: u64, fill: Fill| TensorPlan { name, dims: vec![len], dtype: DType::F32, fill };
        let mut t = vec![matrix("token_embd.weight".into(), d, v)];
        if s.rope_scaling.is_some() {
            t.push(vector("rope_freqs.weight".into(), s.head_dim as u64 / 2, Fill::RopeFreqs));
        }
        for i in 0..self.layers {
            let n = |x: &str| format!("blk.{i}.{x}");
            t.push(vector(n("attn_norm.weight"), d, Fill::Norm));
            t.push(matrix(n("attn_q.weight"), d, q));
            t.push(matrix(n("attn_k.weight"), d, kv));
            t.push(matrix(n("attn_v.weight"), d, kv));
            if s.attn_bias {
                t.push(vector(n("attn_q.bias"), q, Fill::Bias));
                t.push(vector(n("attn_k.bias"), kv, Fill::Bias));
                t.push(vector(n("attn_v.bias"), kv, Fill::Bias));
            }
            t.push(matrix(n("attn_output.weight"), q, d));
            t.push(vector(n("ffn_norm.weight"), d, Fill::Norm));
            t.push(matrix(n("ffn_gate.weight"), d, f));
            t.push(matrix(n("ffn_up.weight"), d, f));
            t.push(matrix(n("ffn_down.weight"), f, d));
        }
        t.push(vector("output_norm.weight".into(), d, Fill::Norm));
        if !s.tied_embeddings {
            t.push(matrix("output.weight".into(), d, v));
        }
        t
    }

    /// The metadata, in file order.
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let s = self.shape;
        let u32v = |x: usize| Value::U32(x as u32);
        let mut m: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String(s.arch.into())),
            ("general.type".into(), Value::String("model".into())),
            ("general.name".into(), Value::String(self.name())),
        ];
        let a = |k: &str| format!("{}.{k}", s.arch);
        if s.arch == "llama" {
            m.push((a("vocab_size"), u32v(s.vocab_size)));
        }
        m.extend([
            (a("context_length"), u32v(s.context_length)),
            (a("embedding_length"), u32v(s.d_model)),
            (a("block_count"), u32v(self.layers)),
            (a("feed_forward_length"), u32v(s.ffn_dim)),
            (a("attention.head_count"), u32v(s.n_heads)),
            (a("attention.head_count_kv"), u32v(s.n_kv_heads)),
            (a("rope.freq_base"), Value::F32(s.rope_base)),
            (a("attention.layer_norm_rms_epsilon"), Value::F32(s.rms_eps)),
        ]);
        if s.arch == "llama" {
            m.push((a("rope.dimension_count"), u32v(s.head_dim)));
        }
        if s.explicit_head_dim {
            m.push((a("attention.key_length"), u32v(s.head_dim)));
            m.push((a("attention.value_length"), u32v(s.head_dim)));
        }
        m.push(("general.file_type".into(), Value::U32(self.quant.file_type())));
        if self.quant != Quant::F16 {
            m.push(("general.quantization_version".into(), Value::U32(2)));
        }
        m.extend(vocabulary(s).metadata());
        m
    }

    /// Bytes of the header: magic, counts, metadata and tensor table, padded to the alignment.
    fn header(&self, tensors: &[TensorPlan]) -> Vec<u8> {
        let metadata = self.metadata();
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in &metadata {
            put_str(&mut out, k);
            out.extend_from_slice(&type_id(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0u64;
        for t in tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.dtype.ggml_type().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = align(offset + t.size());
        }
        out.resize(align(out.len() as u64) as usize, 0);
        out
    }

    /// The size of the file [`Spec::write`] writes.
    pub fn file_size(&self) -> u64 {
        let tensors = self.tensors();
        let data: u64 = tensors.iter().map(|t| align(t.size())).sum();
        self.header(&tensors).len() as u64 + data
    }

    /// Write the file to `out` (wrap a file in a `BufWriter`), generating each tensor's bytes a
    /// chunk at a time.
    pub fn write<W: Write>(&self, out: &mut W) -> Result<Written> {
        let started = Instant::now();
        let tensors = self.tensors();
        let header = self.header(&tensors);
        out.write_all(&header)?;
        let mut bytes = header.len() as u64;
        let f16_table = normal_f16_table(WEIGHT_STD);
        let mut chunk = Vec::new();
        for t in &tensors {
            let mut rng = Rng::new(self.seed ^ fnv1a(t.name.as_bytes()));
            let size = t.size();
            match t.fill {
                Fill::Matrix => {
                    let block = t.dtype.block_bytes() as u64;
                    let per_chunk = (CHUNK_BYTES as u64 / block).max(1);
                    let mut left = size / block;
                    while left > 0 {
                        let n = left.min(per_chunk);
                        chunk.resize((n * block) as usize, 0);
                        fill_blocks(t.dtype, &mut rng, &f16_table, &mut chunk);
                        out.write_all(&chunk)?;
                        left -= n;
                    }
                }
                fill => {
                    let values = vector_values(self.shape, fill, t.elements() as usize, &mut rng);
                    chunk.clear();
                    chunk.extend(values.iter().flat_map(|v| v.to_le_bytes()));
                    out.write_all(&chunk)?;
                }
            }
            let padding = align(size) - size;
            out.write_all(&[0u8; ALIGNMENT as usize][..padding as usize])?;
            bytes += size + padding;
        }
        out.flush()?;
        Ok(Written { bytes, tensors: tensors.len(), secs: started.elapsed().as_secs_f64() })
    }

    /// Write the file at `path` (removed again if writing fails).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write_file(&self, path: &std::path::Path) -> Result<Written> {
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
        let file = std::fs::File::create(path).map_err(io)?;
        let mut w = std::io::BufWriter::with_capacity(8 << 20, file);
        let result = self.write(&mut w).and_then(|r| {
            w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
            Ok(r)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }
}

const CHUNK_BYTES: usize = 1 << 20;

fn align(n: u64) -> u64 {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// The sampler's xoshiro256** seeded through splitmix64: small, fast, and the same everywhere.
struct Rng(crate::sampler::SamplerRng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(crate::sampler::SamplerRng::seed_from_u64(seed))
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// The standard normal quantile function (Acklam's rational approximation, relative error
/// below 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const P_LOW: f64 = 0.02425;
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

/// N(0, std²) as 65,536 equally likely f16 values (the quantiles at (i + ½) / 65536): a random
/// u16 picks one.
fn normal_f16_table(std: f64) -> Vec<u16> {
    (0..1u32 << 16).map(|i| f16::from_f64(std * normal_quantile((i as f64 + 0.5) / 65536.0)).to_bits()).collect()
}

fn normal(rng: &mut Rng) -> f64 {
    normal_quantile(((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64)
}

/// A block scale: `WEIGHT_STD / spread` (the spread is the standard deviation of the block's
/// integer quants), within ±25 %. `signed`: of either sign, as ggml's Q4_0 and Q5_0 quantizers
/// make it (`d = max / -8`), which also centres their off-centre quants (−8..7) on zero.
fn scale(rng: &mut Rng, spread: f64, signed: bool) -> [u8; 2] {
    let r = rng.next_u64();
    let magnitude = 0.75 + 0.5 * (r >> 11) as f64 / (1u64 << 53) as f64;
    let sign = if signed && r & 1 == 1 { -1.0 } else { 1.0 };
    f16::from_f64(sign * WEIGHT_STD / spread * magnitude).to_le_bytes()
}

/// Standard deviations of uniform quants: 0..16 (Q4), 0..32 (Q5), −127..=127 (Q8).
const Q4_SPREAD: f64 = 4.610;
const Q5_SPREAD: f64 = 9.233;
const Q8_SPREAD: f64 = 73.61;

/// Fill whole blocks (or F16 values) of `dtype` with random, valid data.
fn fill_blocks(dtype: DType, rng: &mut Rng, f16_table: &[u16], out: &mut [u8]) {
    match dtype {
        DType::F16 => {
            // Four values a draw (the last draw may serve fewer).
            for c in out.chunks_mut(8) {
                let r = rng.next_u64();
                for (k, v) in c.chunks_exact_mut(2).enumerate() {
                    v.copy_from_slice(&f16_table[(r >> (16 * k)) as u16 as usize].to_le_bytes());
                }
            }
        }
        DType::Q4_0 => {
            for b in out.chunks_exact_mut(dtype.block_bytes()) {
                b[..2].copy_from_slice(&scale(rng, Q4_SPREAD, true));
                rng.fill(&mut b[2..]);
            }
        }
        DType::Q5_0 => {
            for b in out.chunks_exact_mut(dtype.block_bytes()) {
                b[..2].copy_from_slice(&scale(rng, Q5_SPREAD, true));
                rng.fill(&mut b[2..]);
            }
        }
        DType::Q8_0 => {
            for b in out.chunks_exact_mut(dtype.block_bytes()) {
                b[..2].copy_from_slice(&scale(rng, Q8_SPREAD, false));
                rng.fill(&mut b[2..]);
                // −127..=127: −128 is a valid int8 but no quantizer writes it.
                for q in &mut b[2..] {
                    *q = ((((*q as u32) * 255) >> 8) as i32 - 127) as i8 as u8;
                }
            }
        }
        DType::Q4_K => {
            for b in out.chunks_exact_mut(dtype.block_bytes()) {
                // Sub-block scales 32..63 and mins that centre each sub-block on zero.
                let mut sc = [0u8; 8];
                let mut m = [0u8; 8];
                let r = rng.next_u64();
                for j in 0..8 {
                    sc[j] = 32 + ((r >> (8 * j)) & 31) as u8;
                    m[j] = (sc[j] as f64 * 7.5 / 8.0).round() as u8;
                }
                let d = WEIGHT_STD / (Q4_SPREAD * 47.5) * (0.75 + 0.5 * rng.unit());
                b[..2].copy_from_slice(&f16::from_f64(d).to_le_bytes());
                b[2..4].copy_from_slice(&f16::from_f64(d * 8.0).to_le_bytes());
                b[4..16].copy_from_slice(&pack_k4_scales(&sc, &m));
                rng.fill(&mut b[16..]);
            }
        }
        other => unreachable!("synthetic matrices are never {}", other.name()),
    }
}

/// The 12 bytes of a Q4_K/Q5_K super-block's 6-bit scales and mins (the inverse of
/// `get_scale_min_k4`).
fn pack_k4_scales(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
    }
    q
}

/// The values of an F32 vector tensor.
fn vector_values(shape: &Shape, fill: Fill, len: usize, rng: &mut Rng) -> Vec<f32> {
    match fill {
        Fill::Norm => (0..len).map(|_| (1.0 + 0.05 * normal(rng)) as f32).collect(),
        Fill::Bias => (0..len).map(|_| (WEIGHT_STD * normal(rng)) as f32).collect(),
        Fill::RopeFreqs => rope_factors(shape, len),
        Fill::Matrix => unreachable!("matrices are written as blocks"),
    }
}

/// `rope_freqs.weight` as llama.cpp's converter computes it for `rope_type: llama3`: per rotated
/// pair, the factor its frequency is divided by (1 for short wavelengths, `factor` for long
/// ones, a smooth blend between).
fn rope_factors(shape: &Shape, pairs: usize) -> Vec<f32> {
    let r = shape.rope_scaling.expect("only llama3-scaled shapes have rope_freqs");
    let dim = shape.head_dim as f64;
    let low_wavelen = r.original_context / r.low_freq_factor;
    let high_wavelen = r.original_context / r.high_freq_factor;
    (0..pairs)
        .map(|i| {
            // The converter computes the frequencies in f32 (torch).
            let freq = 1.0 / (shape.rope_base as f64).powf((2 * i) as f64 / dim) as f32;
            let wavelen = 2.0 * std::f64::consts::PI / freq as f64;
            let factor = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                r.factor
            } else {
                let smooth =
                    (r.original_context / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
                1.0 / ((1.0 - smooth) / r.factor + smooth)
            };
            factor as f32
        })
        .collect()
}

// ---- The vocabulary ----

/// Text the merges are learnt from: plain English, so that common words become single tokens.
const CORPUS: &str = "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst \
of times; it was the age of wisdom, it was the age of foolishness. Once upon a time there was a little \
girl who lived in a village near the forest. Whenever she went out, the little girl wore a red riding \
cloak, so everyone in the village called her Little Red Riding Hood. The capital of France is Paris, and \
the capital of Italy is Rome. Water is made of hydrogen and oxygen. The sun rises in the east and sets in \
the west. A language model reads a sequence of tokens and predicts the next token. This model has random \
weights, so what it writes means nothing, but it has the shape of a real model: the same number of layers, \
heads and hidden units, and a vocabulary of the same size. Tests use it to measure how long loading takes, \
how much memory the weights need, and whether the answers of two backends agree. There is nothing to \
download and nothing to trust. Hello world! How are you today? I am fine, thank you. What is the weather \
like? It is sunny and warm, with a light wind from the south. She sells sea shells by the sea shore. Peter \
Piper picked a peck of pickled peppers. The rain in Spain stays mainly in the plain. All that glitters is \
not gold. To be or not to be, that is the question. In the beginning there was the word, and the word was \
with the people who spoke it. Numbers such as one, two, three and four are words too. Let us count the \
tokens, the letters and the lines of this text, then write them down in order.";

/// How many merges to learn (fewer if every word of the corpus is a token before that).
const MAX_MERGES: usize = 400;

/// GPT-2's byte-to-character map: printable bytes stand for themselves, the others for the
/// characters from U+0100 on, in byte order.
fn byte_chars() -> [char; 256] {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut chars = ['\0'; 256];
    let mut next = 256;
    for b in 0..256u32 {
        chars[b as usize] = if printable(b) {
            char::from_u32(b).expect("a Latin-1 character")
        } else {
            next += 1;
            char::from_u32(next - 1).expect("a Latin Extended character")
        };
    }
    chars
}

/// The 256 byte tokens in GPT-2's order (the printable ones first, as in GPT-2's vocabulary).
fn byte_tokens() -> Vec<String> {
    let chars = byte_chars();
    let printable = |b: usize| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut order: Vec<usize> = (0..256).filter(|&b| printable(b)).collect();
    order.extend((0..256).filter(|&b| !printable(b)));
    order.into_iter().map(|b| chars[b].to_string()).collect()
}

/// Byte-level BPE merges learnt from [`CORPUS`]: words (a letter run with the space before it)
/// as sequences of byte characters; the most frequent neighbouring pair (the smallest on ties)
/// merges, until [`MAX_MERGES`] or every word is one token. Returns the merges in rank order.
fn learn_merges() -> Vec<(String, String)> {
    let chars = byte_chars();
    let mut counts: std::collections::BTreeMap<Vec<String>, usize> = std::collections::BTreeMap::new();
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        if word.trim_start().chars().next().is_some_and(char::is_alphabetic) {
            let symbols = word.bytes().map(|b| chars[b as usize].to_string()).collect();
            *counts.entry(symbols).or_default() += 1;
        }
        word.clear();
    };
    for c in CORPUS.chars() {
        if c.is_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word);
            if c == ' ' {
                word.push(' ');
            }
        }
    }
    flush(&mut word);
    let mut words: Vec<(Vec<String>, usize)> = counts.into_iter().collect();
    let mut merges = Vec::new();
    while merges.len() < MAX_MERGES {
        let mut pairs: std::collections::BTreeMap<(&str, &str), usize> = std::collections::BTreeMap::new();
        for (symbols, n) in &words {
            for w in symbols.windows(2) {
                *pairs.entry((&w[0], &w[1])).or_default() += n;
            }
        }
        // The most frequent pair; BTreeMap order makes the smallest one win ties.
        let Some((&(a, b), _)) = pairs.iter().fold(None, |best: Option<(&(&str, &str), &usize)>, p| match best {
            Some(b) if b.1 >= p.1 => Some(b),
            _ => Some(p),
        }) else {
            break;
        };
        let (a, b) = (a.to_string(), b.to_string());
        for (symbols, _) in &mut words {
            let mut i = 0;
            while i + 1 < symbols.len() {
                if symbols[i] == a && symbols[i + 1] == b {
                    symbols[i] = format!("{a}{b}");
                    symbols.remove(i + 1);
                }
                i += 1;
            }
        }
        merges.push((a, b));
    }
    merges
}

/// Token types (llama.cpp's `llama_token_type`).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const UNUSED: i32 = 5;

/// A synthetic vocabulary.
struct Vocabulary {
    pre: &'static str,
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
    bos: u32,
    eos: u32,
    unk: Option<u32>,
    pad: u32,
    add_bos: bool,
    add_space_prefix: Option<bool>,
}

impl Vocabulary {
    fn metadata(self) -> Vec<(String, Value)> {
        let k = |s: &str| format!("tokenizer.ggml.{s}");
        let mut m = vec![(k("model"), Value::String("gpt2".into())), (k("pre"), Value::String(self.pre.into()))];
        if let Some(p) = self.add_space_prefix {
            m.push((k("add_space_prefix"), Value::Bool(p)));
        }
        m.extend([
            (k("tokens"), Value::Array(self.tokens.into_iter().map(Value::String).collect())),
            (k("token_type"), Value::Array(self.types.into_iter().map(Value::I32).collect())),
            (k("merges"), Value::Array(self.merges.into_iter().map(Value::String).collect())),
            (k("bos_token_id"), Value::U32(self.bos)),
            (k("eos_token_id"), Value::U32(self.eos)),
        ]);
        if let Some(unk) = self.unk {
            m.push((k("unknown_token_id"), Value::U32(unk)));
        }
        m.push((k("padding_token_id"), Value::U32(self.pad)));
        m.push((k("add_bos_token"), Value::Bool(self.add_bos)));
        m
    }
}

/// The vocabulary of `shape`: byte tokens and merges from `start`, the family's special tokens
/// at their real ids, fillers elsewhere.
fn vocabulary(shape: &Shape) -> Vocabulary {
    let n = shape.vocab_size;
    let (pre, start, specials): (&str, usize, Vec<(usize, String)>) = match shape.family {
        // SmolLM2: its 17 special tokens first, then the byte tokens.
        Family::SmolLm => {
            let names = [
                "<|endoftext|>",
                "<|im_start|>",
                "<|im_end|>",
                "<repo_name>",
                "<reponame>",
                "<file_sep>",
                "<filename>",
                "<gh_stars>",
                "<issue_start>",
                "<issue_comment>",
                "<issue_closed>",
                "<jupyter_start>",
                "<jupyter_text>",
                "<jupyter_code>",
                "<jupyter_output>",
                "<jupyter_script>",
                "<empty_output>",
            ];
            ("smollm", names.len(), names.iter().enumerate().map(|(i, s)| (i, s.to_string())).collect())
        }
        // Llama 3: 128,000 ordinary tokens, then 256 special ones.
        Family::Llama3 => {
            let base = 128_000;
            let named = [
                (0, "<|begin_of_text|>"),
                (1, "<|end_of_text|>"),
                (6, "<|start_header_id|>"),
                (7, "<|end_header_id|>"),
                (8, "<|eom_id|>"),
                (9, "<|eot_id|>"),
                (10, "<|python_tag|>"),
            ];
            let mut reserved = 0;
            let specials = (0..n - base)
                .map(|i| match named.iter().find(|(j, _)| *j == i) {
                    Some((_, s)) => (base + i, s.to_string()),
                    None => {
                        reserved += 1;
                        (base + i, format!("<|reserved_special_token_{}|>", reserved - 1))
                    }
                })
                .collect();
            ("llama-bpe", 0, specials)
        }
        // Qwen2.5: 151,643 ordinary tokens, then its special ones (the rest is padding).
        Family::Qwen2 => {
            let names = [
                "<|endoftext|>",
                "<|im_start|>",
                "<|im_end|>",
                "<|object_ref_start|>",
                "<|object_ref_end|>",
                "<|box_start|>",
                "<|box_end|>",
                "<|quad_start|>",
                "<|quad_end|>",
                "<|vision_start|>",
                "<|vision_end|>",
                "<|vision_pad|>",
                "<|image_pad|>",
                "<|video_pad|>",
            ];
            ("qwen2", 0, names.iter().enumerate().map(|(i, s)| (151_643 + i, s.to_string())).collect())
        }
    };
    let merges = learn_merges();
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![UNUSED; n];
    for (id, text) in specials {
        tokens[id] = Some(text);
        types[id] = CONTROL;
    }
    let ordinary = byte_tokens().into_iter().chain(merges.iter().map(|(a, b)| format!("{a}{b}")));
    for (i, text) in ordinary.enumerate() {
        assert!(tokens[start + i].is_none(), "ordinary tokens overlap the special ones");
        tokens[start + i] = Some(text);
        types[start + i] = NORMAL;
    }
    let tokens: Vec<String> =
        tokens.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| format!("<|reserved_{i}|>"))).collect();
    let id = |text: &str| tokens.iter().position(|t| t == text).expect("a special token of the family") as u32;
    let (bos, eos, unk, pad, add_bos, add_space_prefix) = match shape.family {
        Family::SmolLm => {
            (id("<|im_start|>"), id("<|im_end|>"), Some(id("<|endoftext|>")), id("<|im_end|>"), false, Some(false))
        }
        Family::Llama3 => (id("<|begin_of_text|>"), id("<|end_of_text|>"), None, id("<|end_of_text|>"), true, None),
        Family::Qwen2 => (id("<|endoftext|>"), id("<|im_end|>"), None, id("<|endoftext|>"), false, None),
    };
    Vocabulary {
        pre,
        tokens,
        types,
        merges: merges.into_iter().map(|(a, b)| format!("{a} {b}")).collect(),
        bos,
        eos,
        unk,
        pad,
        add_bos,
        add_space_prefix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{dequantize, scale_min_k4};

    #[test]
    fn k4_scales_pack_as_ggml_unpacks_them() {
        let mut rng = Rng::new(7);
        for _ in 0..100 {
            let mut sc = [0u8; 8];
            let mut m = [0u8; 8];
            for j in 0..8 {
                sc[j] = (rng.next_u64() % 64) as u8;
                m[j] = (rng.next_u64() % 64) as u8;
            }
            let q = pack_k4_scales(&sc, &m);
            for j in 0..8 {
                assert_eq!(scale_min_k4(j, &q), (sc[j], m[j]), "sub-block {j}");
            }
        }
    }

    #[test]
    fn blocks_dequantize_to_small_centred_weights() {
        let table = normal_f16_table(WEIGHT_STD);
        for dtype in [DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::F16] {
            let n = 256 * 64;
            let mut bytes = vec![0u8; n / dtype.block_elems() * dtype.block_bytes()];
            fill_blocks(dtype, &mut Rng::new(1), &table, &mut bytes);
            let mut w = vec![0f32; n];
            dequantize(dtype, &bytes, &mut w).unwrap();
            let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
            let std = (w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            assert!(w.iter().all(|x| x.is_finite()), "{dtype:?}");
            assert!(mean.abs() < 0.002, "{dtype:?}: mean {mean}");
            assert!((0.015..0.025).contains(&std), "{dtype:?}: std {std}");
        }
    }

    #[test]
    fn f16_values_fill_odd_lengths() {
        let table = normal_f16_table(WEIGHT_STD);
        let mut bytes = vec![0u8; 2 * 7];
        fill_blocks(DType::F16, &mut Rng::new(2), &table, &mut bytes);
        assert!(bytes.chunks_exact(2).all(|v| v != [0, 0]), "{bytes:?}");
    }

    #[test]
    fn q8_quants_avoid_minus_128() {
        let mut bytes = vec![0u8; 34 * 1000];
        fill_blocks(DType::Q8_0, &mut Rng::new(3), &[], &mut bytes);
        assert!(bytes.chunks_exact(34).all(|b| b[2..].iter().all(|&q| q != 0x80)));
    }

    #[test]
    fn the_normal_table_is_a_standard_normal() {
        let t: Vec<f64> = normal_f16_table(1.0).iter().map(|&b| f16::from_bits(b).to_f64()).collect();
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        let var = t.iter().map(|x| x * x).sum::<f64>() / t.len() as f64;
        assert!(mean.abs() < 1e-3 && (var - 1.0).abs() < 1e-2, "{mean} {var}");
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.001) + 3.090_232).abs() < 1e-5);
    }

    #[test]
    fn llama3_rope_factors_are_the_converters() {
        let s = shape("llama-3.1-8b").unwrap();
        let f = rope_factors(s, 64);
        // High frequencies unscaled, low ones divided by 8, a smooth blend between.
        assert_eq!(f[0], 1.0);
        assert_eq!(f[63], 8.0);
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
        assert!(f.iter().any(|&x| x > 1.0 && x < 8.0));
    }

    #[test]
    fn merges_are_learnt_in_rank_order_from_existing_tokens() {
        let merges = learn_merges();
        assert!(merges.len() >= 200, "{} merges", merges.len());
        let mut known: std::collections::HashSet<String> = byte_tokens().into_iter().collect();
        assert_eq!(known.len(), 256);
        for (a, b) in &merges {
            assert!(known.contains(a) && known.contains(b), "{a} {b}");
            assert!(known.insert(format!("{a}{b}")), "{a}{b} learnt twice");
        }
        assert!(known.contains("Ġthe"));
    }

    #[test]
    fn vocabularies_have_the_embeddings_size_and_unique_texts() {
        for s in SHAPES {
            let v = vocabulary(s);
            assert_eq!(v.tokens.len(), s.vocab_size, "{}", s.name);
            let unique: std::collections::HashSet<&String> = v.tokens.iter().collect();
            assert_eq!(unique.len(), s.vocab_size, "{}", s.name);
            assert_eq!(v.types[v.bos as usize], CONTROL);
            assert_eq!(v.types[v.eos as usize], CONTROL);
        }
    }

    #[test]
    fn quants_fall_back_as_llama_cpp_does() {
        assert_eq!(Quant::Q4_K.dtype_for_row(576), DType::Q5_0);
        assert_eq!(Quant::Q4_K.dtype_for_row(1536), DType::Q4_K);
        assert_eq!(Quant::Q4_0.dtype_for_row(576), DType::Q4_0);
        assert_eq!(Quant::Q4_K.dtype_for_row(40), DType::F16);
        assert_eq!(Quant::parse("q4_k").unwrap(), Quant::Q4_K);
        assert!(Quant::parse("Q2_K").is_err());
    }
}
