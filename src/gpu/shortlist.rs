//! Reading a step's logits back: the whole vector, or (the usual case) the shortlist the
//! sampler asks for, reduced on the GPU by `shaders/topk.wgsl` so only `(1 + top + ids) × 8`
//! bytes cross back. See "Shortlists" in `src/sampler.rs` for why the result is exact.

use std::num::NonZeroU64;

use super::buffers::{read_back, staging, storage};
use super::device::Gpu;
use super::kernels::{Kernels, TopkParams};
use crate::error::Result;
use crate::sampler::{Logits, LogitsRequest, Shortlist, MAX_SHORTLIST};

/// Items one workgroup sorts.
const CHUNK: usize = 1024;
/// Most reduction rounds (a 256k vocabulary with `top` 512 takes 9).
const MAX_ROUNDS: usize = 16;
const LSE_SLOT: usize = MAX_ROUNDS;
const GATHER_SLOT: usize = MAX_ROUNDS + 1;

pub struct Reader {
    vocab: usize,
    align: u64,
    params: wgpu::Buffer,
    ids: wgpu::Buffer,
    result: wgpu::Buffer,
    staging: wgpu::Buffer,
    logits: wgpu::Buffer,
    topk: wgpu::ComputePipeline,
    logsumexp: wgpu::ComputePipeline,
    gather: wgpu::ComputePipeline,
    /// Round r's bind group: `[writes to scratch, writes to the result]`.
    rounds: Vec<[wgpu::BindGroup; 2]>,
    lse: wgpu::BindGroup,
    gathering: wgpu::BindGroup,
    /// GPU memory of the buffers above and the scratch.
    device_bytes: u64,
}

/// What a recorded step will read back.
pub enum Pending {
    Full,
    Shortlist { top: usize, ids: usize },
}

impl Reader {
    pub fn new(gpu: &Gpu, kernels: &Kernels, logits: &wgpu::Buffer, vocab: usize) -> Reader {
        let align = gpu.uniform_align.max(16);
        let params = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("shortlist parameters"),
            size: align * (MAX_ROUNDS + 2) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let ids = storage(gpu, "shortlist ids", (MAX_SHORTLIST * 4) as u64);
        let pairs = vocab.div_ceil(CHUNK) * (CHUNK / 2);
        let scratch = [storage(gpu, "shortlist a", pairs as u64 * 8), storage(gpu, "shortlist b", pairs as u64 * 8)];
        let result_bytes = (1 + 2 * MAX_SHORTLIST) as u64 * 8;
        let result = storage(gpu, "shortlist", result_bytes);
        let staging = staging(gpu, result_bytes.max(vocab as u64 * 4));
        let family = &kernels.topk;
        let slot = |i: usize| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &params,
                offset: align * i as u64,
                size: NonZeroU64::new(16),
            })
        };
        let group = |cin: &wgpu::Buffer, cout: &wgpu::Buffer, i: usize| {
            family.bind(
                gpu,
                &[
                    logits.as_entire_binding(),
                    cin.as_entire_binding(),
                    cout.as_entire_binding(),
                    slot(i),
                    ids.as_entire_binding(),
                ],
            )
        };
        let rounds = (0..MAX_ROUNDS)
            .map(|r| {
                // Round 0 reads the logits; its `cin` is bound but unused.
                let cin = &scratch[(r + 1) % 2];
                [group(cin, &scratch[r % 2], r), group(cin, &result, r)]
            })
            .collect();
        let device_bytes = [&params, &ids, &scratch[0], &scratch[1], &result, &staging].iter().map(|b| b.size()).sum();
        Reader {
            device_bytes,
            vocab,
            align,
            lse: group(&scratch[0], &result, LSE_SLOT),
            gathering: group(&scratch[0], &result, GATHER_SLOT),
            params,
            ids,
            result,
            staging,
            logits: logits.clone(),
            topk: family.pipeline("topk").clone(),
            logsumexp: family.pipeline("logsumexp").clone(),
            gather: family.pipeline("gather").clone(),
            rounds,
        }
    }

    pub fn device_bytes(&self) -> u64 {
        self.device_bytes
    }

    /// Record what `want` needs into `encoder`, ending with the copy to the staging buffer.
    /// Returns how many dispatches it recorded and what to read.
    pub fn record(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, want: &LogitsRequest) -> (u64, Pending) {
        let (top, ids) = match want {
            LogitsRequest::Shortlist { top, ids } if *top <= MAX_SHORTLIST && ids.len() <= MAX_SHORTLIST => {
                ((*top).clamp(1, MAX_SHORTLIST), ids)
            }
            _ => {
                encoder.copy_buffer_to_buffer(&self.logits, 0, &self.staging, 0, self.vocab as u64 * 4);
                return (0, Pending::Full);
            }
        };
        let ids: Vec<u32> = ids.iter().copied().filter(|&i| (i as usize) < self.vocab).collect();
        let mut params = vec![0u8; self.align as usize * (MAX_ROUNDS + 2)];
        let mut put = |slot: usize, p: TopkParams| {
            let at = slot * self.align as usize;
            params[at..at + 16].copy_from_slice(bytemuck::bytes_of(&p));
        };
        // Rounds: each keeps the best `top` of every chunk of 1024 until one chunk is left.
        let mut rounds = Vec::new();
        let mut count = self.vocab;
        loop {
            let chunks = count.div_ceil(CHUNK);
            let last = chunks == 1;
            let from_logits = rounds.is_empty() as u32;
            put(
                rounds.len(),
                TopkParams { count: count as u32, keep: top as u32, out_offset: last as u32, from_logits },
            );
            rounds.push((chunks, last));
            if last {
                break;
            }
            count = chunks * top;
        }
        debug_assert!(rounds.len() <= MAX_ROUNDS);
        put(LSE_SLOT, TopkParams { count: self.vocab as u32, ..Default::default() });
        put(GATHER_SLOT, TopkParams { count: ids.len() as u32, out_offset: 1 + top as u32, ..Default::default() });
        gpu.queue.write_buffer(&self.params, 0, &params);
        if !ids.is_empty() {
            gpu.queue.write_buffer(&self.ids, 0, bytemuck::cast_slice(&ids));
        }

        let mut dispatches = 0;
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&self.logsumexp);
            pass.set_bind_group(0, &self.lse, &[]);
            pass.dispatch_workgroups(1, 1, 1);
            dispatches += 1;
            pass.set_pipeline(&self.topk);
            for (r, &(chunks, last)) in rounds.iter().enumerate() {
                pass.set_bind_group(0, &self.rounds[r][last as usize], &[]);
                pass.dispatch_workgroups(chunks as u32, 1, 1);
                dispatches += 1;
            }
            if !ids.is_empty() {
                pass.set_pipeline(&self.gather);
                pass.set_bind_group(0, &self.gathering, &[]);
                pass.dispatch_workgroups(ids.len().div_ceil(64) as u32, 1, 1);
                dispatches += 1;
            }
        }
        let bytes = (1 + top + ids.len()) as u64 * 8;
        encoder.copy_buffer_to_buffer(&self.result, 0, &self.staging, 0, bytes);
        (dispatches, Pending::Shortlist { top, ids: ids.len() })
    }

    /// Bytes that `pending` reads back.
    pub fn bytes(&self, pending: &Pending) -> u64 {
        match pending {
            Pending::Full => self.vocab as u64 * 4,
            Pending::Shortlist { top, ids } => (1 + top + ids) as u64 * 8,
        }
    }

    /// Read what a submitted step recorded.
    pub async fn read(&self, gpu: &Gpu, pending: &Pending) -> Result<Logits> {
        let words = read_back(gpu, &self.staging, self.bytes(pending)).await?;
        Ok(match pending {
            Pending::Full => Logits::Full(words.iter().map(|&w| f32::from_bits(w)).collect()),
            Pending::Shortlist { .. } => {
                let entries = words[2..]
                    .chunks_exact(2)
                    .filter(|p| (p[1] as usize) < self.vocab)
                    .map(|p| (p[1], f32::from_bits(p[0])))
                    .collect();
                Logits::Shortlist(Shortlist {
                    vocab: self.vocab,
                    entries,
                    max: f32::from_bits(words[0]),
                    sum_exp: f32::from_bits(words[1]),
                })
            }
        })
    }
}
