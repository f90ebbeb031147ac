//! Loading a model as a stream of bytes, the way it arrives from the network, a file or a cache:
//! the header is parsed from the first bytes, the model checked against the device (before any
//! weight is downloaded), the backend's buffers made, and every later byte placed where its
//! tensor lives as it arrives. No copy of the file exists at any time: on the GPU backend the CPU
//! holds the header and a partial row; on the CPU one tensor at a time is gathered and converted.
//!
//! - `split` — models in several parts (llama.cpp's gguf-split)
//! - `fit`   — what a model needs on a backend, from its header, against the device's limits
//! - `file`  — native: memory-mapped files fed through the same stream

#[cfg(not(target_arch = "wasm32"))]
pub mod file;
pub mod fit;
pub mod split;

use sha2::Digest;

use crate::chat::ChatTemplate;
use crate::cpu::CpuLoad;
use crate::engine::{BackendKind, Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::gguf::{Header, Prefix, TensorInfo};
use crate::gpu::{AdapterReport, Gpu, GpuLoad};
use crate::model::{Config, Weights};
use crate::tokenizer::Tokenizer;
use fit::{Limits, MemoryEstimate};

/// A header longer than this is hostile (real ones, vocabulary included, are under 20 MB).
const MAX_HEADER: u64 = 256 << 20;

/// A model loading from a stream of bytes: [`Loader::push`] the bytes in order (all parts, one
/// after the other), then [`Loader::finish`].
pub struct Loader {
    options: EngineOptions,
    parts: Vec<u64>,
    /// Headers of parts given ahead of their bytes ([`Loader::part_header`]), with their bytes.
    given: Vec<Option<(Header, Vec<u8>)>>,
    received: u64,
    placed: u64,
    hash: sha2::Sha256,
    stage: Stage,
}

enum Stage {
    /// Gathering the first part's header; `want` is how many bytes the next parse needs.
    Header {
        bytes: Vec<u8>,
        want: u64,
    },
    Loading(Box<Loading>),
    /// A push failed: the loader is unusable.
    Failed,
}

struct Loading {
    config: Config,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    estimate: MemoryEstimate,
    sink: Sink,
    /// Stream ranges of the tensors the model uses, by start, with their index in the sink.
    targets: Vec<(u64, u64, usize)>,
    /// The first target not yet complete.
    next: usize,
    /// Header bytes of later parts, at their stream offsets: checked as they stream past.
    headers: Vec<(u64, Vec<u8>)>,
}

enum Sink {
    Gpu(Box<GpuLoad>, AdapterReport),
    Cpu(CpuLoad),
}

impl Loader {
    /// A load of a model whose parts (one for a whole file) have these sizes in bytes.
    pub fn new(options: EngineOptions, parts: Vec<u64>) -> Result<Loader> {
        if parts.is_empty() || parts.contains(&0) {
            return Err(Error::InvalidArgument("a model needs at least one non-empty part".into()));
        }
        if options.context_size == Some(0) {
            return Err(Error::InvalidArgument("context_size must be at least 1".into()));
        }
        // A kernel variant that does not exist is refused whichever backend runs.
        if let Some(name) = &options.gpu.kernels {
            crate::gpu::kernels::Variant::parse(name)?;
        }
        let n = parts.len();
        Ok(Loader {
            options,
            parts,
            given: (0..n).map(|_| None).collect(),
            received: 0,
            placed: 0,
            hash: sha2::Sha256::new(),
            stage: Stage::Header { bytes: Vec::new(), want: 1 << 16 },
        })
    }

    /// Give part `k`'s header (its first bytes) ahead of its place in the stream: a split model
    /// needs every part's tensor table before its weights can be placed. Returns 0 once parsed,
    /// else how many bytes of the part's start it needs.
    pub fn part_header(&mut self, k: usize, prefix: &[u8]) -> Result<u64> {
        let size = *self.parts.get(k).ok_or_else(|| Error::InvalidArgument(format!("there is no part {k}")))?;
        match Header::parse_prefix(prefix, size)? {
            Prefix::NeedBytes(n) if n > MAX_HEADER => Err(header_too_long()),
            Prefix::NeedBytes(n) => Ok(n),
            Prefix::Header(h) => {
                let len = h.data_start as usize;
                self.given[k] = Some((h, prefix[..len.min(prefix.len())].to_vec()));
                Ok(0)
            }
        }
    }

    /// Bytes pushed so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes placed into the backend's weights so far.
    pub fn placed(&self) -> u64 {
        self.placed
    }

    /// All parts' bytes together.
    pub fn total(&self) -> u64 {
        self.parts.iter().sum()
    }

    /// The estimate the model was checked with, once the header is in.
    pub fn estimate(&self) -> Option<&MemoryEstimate> {
        match &self.stage {
            Stage::Loading(l) => Some(&l.estimate),
            _ => None,
        }
    }

    pub fn header_parsed(&self) -> bool {
        matches!(self.stage, Stage::Loading(_))
    }

    /// Lowercase hex SHA-256 of every byte pushed (for one file, the file's).
    pub fn sha256(&self) -> String {
        self.hash.clone().finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The next bytes of the stream. After an error the loader is unusable.
    pub async fn push(&mut self, chunk: &[u8]) -> Result<()> {
        let result = self.push_inner(chunk).await;
        if result.is_err() {
            self.stage = Stage::Failed;
        }
        result
    }

    async fn push_inner(&mut self, chunk: &[u8]) -> Result<()> {
        let start = self.received;
        if start + chunk.len() as u64 > self.total() {
            return Err(Error::BadModel(format!("the model is longer than its announced {} bytes", self.total())));
        }
        self.hash.update(chunk);
        self.received += chunk.len() as u64;
        match &mut self.stage {
            Stage::Failed => Err(Error::InvalidArgument("this load failed earlier; start a new one".into())),
            Stage::Loading(l) => {
                self.placed += l.route(start, chunk).await?;
                Ok(())
            }
            Stage::Header { bytes, want } => {
                let first = self.parts[0];
                let take = ((first - start.min(first)) as usize).min(chunk.len());
                bytes.extend_from_slice(&chunk[..take]);
                if (bytes.len() as u64) < (*want).min(first) {
                    return Ok(());
                }
                let header = match Header::parse_prefix(bytes, first)? {
                    Prefix::NeedBytes(n) if n > MAX_HEADER => return Err(header_too_long()),
                    Prefix::NeedBytes(n) => {
                        *want = n;
                        return Ok(());
                    }
                    Prefix::Header(h) => h,
                };
                let head = std::mem::take(bytes);
                let mut loading = Box::new(self.setup(header).await?);
                // What came before the plan: the header, and maybe the first weights.
                let mut placed = loading.route(0, &head).await?;
                placed += loading.route(head.len() as u64, &chunk[take..]).await?;
                self.placed += placed;
                self.stage = Stage::Loading(loading);
                Ok(())
            }
        }
    }

    /// The header is in: read the model, check it fits, make the backend's buffers.
    async fn setup(&mut self, first: Header) -> Result<Loading> {
        let n = split::count(&first)?;
        if n != self.parts.len() {
            return Err(Error::InvalidArgument(format!(
                "the model is in {n} parts (split.count), {} were given",
                self.parts.len()
            )));
        }
        let header_bytes = first.data_start;
        let mut headers = vec![first];
        let mut checks = Vec::new();
        let mut base = self.parts[0];
        for k in 1..n {
            let (h, bytes) = self.given[k].take().ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "part {} of {n}'s header must be given before the stream (part_header)",
                    k + 1
                ))
            })?;
            checks.push((base, bytes));
            base += self.parts[k];
            headers.push(h);
        }
        let tensors = split::merged_tensors(&headers)?;
        let first = &headers[0];
        let config = Config::from_gguf(first)?;
        let tokenizer = match &self.options.tokenizer_json {
            Some(json) => Tokenizer::from_json(json, first)?,
            None => Tokenizer::from_gguf(first)?,
        };
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::BadModel(format!(
                "the tokenizer has {} tokens but the embedding only {}",
                tokenizer.vocab_size(),
                config.vocab_size
            )));
        }
        let template = ChatTemplate::from_gguf(first, &tokenizer)?;
        let capacity = capacity(&self.options, &config);
        let infos = Weights::from_table(&tensors, &config)?;
        let (estimate, sink) = choose_backend(&self.options, &config, &infos, capacity, header_bytes).await?;
        let mut targets: Vec<(u64, u64, usize)> =
            infos.all().into_iter().enumerate().map(|(i, t)| (t.offset, t.size, i)).collect();
        targets.sort_unstable();
        Ok(Loading { config, tokenizer, template, estimate, sink, targets, next: 0, headers: checks })
    }

    /// Every byte is in: the engine.
    pub async fn finish(self) -> Result<Engine> {
        if self.received != self.total() {
            return Err(Error::BadModel(format!("the model stopped at {} of {} bytes", self.received, self.total())));
        }
        let Stage::Loading(l) = self.stage else {
            return Err(Error::BadModel("the model ended inside its header".into()));
        };
        let Loading { config, tokenizer, template, sink, estimate, .. } = *l;
        let (backend, adapter): (Box<dyn crate::backend::Backend>, _) = match sink {
            Sink::Gpu(load, report) => (Box::new(load.finish().await?), Some(report)),
            Sink::Cpu(load) => (Box::new(load.finish()?), None),
        };
        Ok(Engine::from_parts(config, tokenizer, template, backend, adapter, estimate))
    }
}

impl Loading {
    /// Place the bytes of `chunk` (at stream offset `start`) that belong to tensors; returns
    /// how many were placed.
    async fn route(&mut self, start: u64, chunk: &[u8]) -> Result<u64> {
        let end = start + chunk.len() as u64;
        for (at, bytes) in &self.headers {
            let (a, b) = (start.max(*at), end.min(at + bytes.len() as u64));
            if a < b && chunk[(a - start) as usize..(b - start) as usize] != bytes[(a - at) as usize..(b - at) as usize]
            {
                return Err(Error::BadModel(format!("the part at byte {at} is not the one whose header was given")));
            }
        }
        let mut placed = 0;
        while let Some(&(t0, size, i)) = self.targets.get(self.next) {
            if t0 >= end {
                break;
            }
            let (a, b) = (start.max(t0), end.min(t0 + size));
            if a < b {
                let piece = &chunk[(a - start) as usize..(b - start) as usize];
                match &mut self.sink {
                    Sink::Gpu(load, _) => load.place(i, a - t0, piece).await?,
                    Sink::Cpu(load) => load.place(i, a - t0, piece)?,
                }
                placed += piece.len() as u64;
            }
            if t0 + size > end {
                break;
            }
            self.next += 1;
        }
        Ok(placed)
    }
}

fn header_too_long() -> Error {
    Error::BadModel(format!("the GGUF header is longer than {} MB", MAX_HEADER >> 20))
}

/// The KV cache's capacity the options ask for.
pub fn capacity(options: &EngineOptions, config: &Config) -> usize {
    match options.context_size {
        Some(n) => n.min(config.context_length).max(1),
        None => config.context_length.min(4096),
    }
}

/// The backend the options ask for, checked against its limits, with its buffers made.
async fn choose_backend(
    options: &EngineOptions,
    c: &Config,
    w: &Weights<&TensorInfo>,
    capacity: usize,
    header_bytes: u64,
) -> Result<(MemoryEstimate, Sink)> {
    let limits = Limits { memory_limit_bytes: options.memory_limit_bytes, ..Limits::default() };
    let quantized = !options.exact_cpu;
    let cpu = || -> Result<(MemoryEstimate, Sink)> {
        let e = fit::cpu(c, w, capacity, header_bytes, quantized, &limits);
        e.check()?;
        Ok((e, Sink::Cpu(CpuLoad::new(c, w, capacity, quantized))))
    };
    if options.backend == BackendKind::Cpu {
        return cpu();
    }
    let gpu = match Gpu::new(&options.gpu).await {
        Ok(gpu) => gpu,
        Err(Error::NoWebGpu(_)) if options.backend == BackendKind::Auto => return cpu(),
        Err(e) => return Err(e),
    };
    // A software adapter is slower than the CPU backend; take it only for a model the CPU
    // cannot hold.
    let cpu_fits = fit::cpu(c, w, capacity, header_bytes, quantized, &limits).fits;
    if gpu.software && options.backend == BackendKind::Auto && cpu_fits {
        return cpu();
    }
    let e = fit::gpu(c, w, capacity, header_bytes, &gpu_limits(&gpu, &limits));
    e.check()?;
    let report = gpu.report.clone();
    let load = GpuLoad::new(gpu, c, w, capacity).await?;
    Ok((e, Sink::Gpu(Box::new(load), report)))
}

/// The limits of an open device, with the caller's budget.
fn gpu_limits(gpu: &Gpu, limits: &Limits) -> Limits {
    Limits {
        max_buffer_size: Some(gpu.report.limits.max_buffer_size),
        max_storage_buffer_binding_size: Some(gpu.max_binding),
        f16: gpu.f16,
        ..limits.clone()
    }
}

/// What a model needs, from the first bytes of its first part (`parts`: every part's size):
/// `Err(need)` when the prefix is too short for the header, with how many bytes it needs.
pub fn estimate(
    prefix: &[u8],
    parts: &[u64],
    options: &EngineOptions,
    limits: &Limits,
) -> Result<std::result::Result<MemoryEstimate, u64>> {
    let first = *parts.first().ok_or_else(|| Error::InvalidArgument("no parts".into()))?;
    let header = match Header::parse_prefix(prefix, first)? {
        Prefix::NeedBytes(n) if n > MAX_HEADER => return Err(header_too_long()),
        Prefix::NeedBytes(n) => return Ok(Err(n)),
        Prefix::Header(h) => h,
    };
    let config = Config::from_gguf(&header)?;
    let capacity = capacity(options, &config);
    // A split model's later tensors are not in this header: count the other parts' bytes as
    // weights of the first part's kinds (close enough to decide a fit).
    let infos = match split::count(&header)? {
        1 => Weights::from_table(&header.tensors, &config)?,
        _ => return Ok(Ok(split_estimate(&header, parts, &config, capacity, options, limits))),
    };
    let limits =
        Limits { memory_limit_bytes: limits.memory_limit_bytes.or(options.memory_limit_bytes), ..limits.clone() };
    Ok(Ok(match options.backend {
        BackendKind::Cpu => fit::cpu(&config, &infos, capacity, header.data_start, !options.exact_cpu, &limits),
        _ => fit::gpu(&config, &infos, capacity, header.data_start, &limits),
    }))
}

/// A split model's estimate from its first part: the weights are about the parts' bytes.
fn split_estimate(
    h: &Header,
    parts: &[u64],
    c: &Config,
    capacity: usize,
    options: &EngineOptions,
    limits: &Limits,
) -> MemoryEstimate {
    let weights = parts.iter().sum::<u64>() - h.data_start;
    let kv = 2 * c.n_layers as u64 * crate::gpu::kv_cache::KvCache::layer_bytes(c.kv_dim(), capacity, limits.f16);
    let on_gpu = options.backend != BackendKind::Cpu;
    let total = weights + kv;
    let limit = limits.memory_limit_bytes.or(options.memory_limit_bytes);
    let reason = limit.filter(|&l| total > l).map(|l| {
        format!("the model needs about {} MB (weights and KV cache), more than the {} MB allowed", total >> 20, l >> 20)
    });
    fit::MemoryEstimate::rough(if on_gpu { "gpu" } else { "cpu" }, capacity, weights, kv, reason)
}
