//! Both forward passes (CPU, and GPU on its f32 and f16 paths) on tiny random models of each
//! supported architecture, against a naive f64 implementation written here from the papers
//! (RMSNorm, RoPE, GQA, SwiGLU). Covers what the default model does not: Qwen2's biases and NeoX
//! RoPE, an untied output, Llama 3 rope_freqs, linear RoPE scaling, several prefill chunks, and
//! Gemma 3 (scaled embeddings, q/k norms, post-norms, GELU, a sliding window shorter than the
//! prompt on one layer and full attention on the other, two RoPE bases, soft-capped logits).

use webgpu_llm::backend::{Backend, Place};
use webgpu_llm::cpu::CpuModel;
use webgpu_llm::gguf::writer::GgufWriter;
use webgpu_llm::gguf::{Gguf, Value};
use webgpu_llm::gpu::{Gpu, GpuModel, GpuOptions};
use webgpu_llm::model::{Config, Weights};
use webgpu_llm::sampler::LogitsRequest;

// Rows of 32 and 64 values: the GPU kernels read whole groups of 32.
const D: usize = 32;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HD: usize = 8;
const FFN: usize = 64;
const VOCAB: usize = 13;
const LAYERS: usize = 2;
const GEMMA_WINDOW: usize = 5;
const GEMMA_SOFTCAP: f64 = 4.0;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// Tensors by name, values row-major with `dims[0]` per row (ggml order).
type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn random_model(arch: &str, seed: u64, tied: bool, rope_freqs: bool, linear_scale: Option<f32>) -> (Vec<u8>, Tensors) {
    let mut rng = Rng(seed);
    let mut t: Tensors = Vec::new();
    let mut add = |name: String, dims: Vec<usize>, scale: f32, rng: &mut Rng| {
        let n = dims.iter().product();
        t.push((name, dims, rng.vec(n, scale)));
    };
    add("token_embd.weight".into(), vec![D, VOCAB], 2.0, &mut rng);
    for l in 0..LAYERS {
        let n = |s: &str| format!("blk.{l}.{s}");
        add(n("attn_norm.weight"), vec![D], 1.0, &mut rng);
        add(n("attn_q.weight"), vec![D, HEADS * HD], 1.0, &mut rng);
        add(n("attn_k.weight"), vec![D, KV_HEADS * HD], 1.0, &mut rng);
        add(n("attn_v.weight"), vec![D, KV_HEADS * HD], 1.0, &mut rng);
        add(n("attn_output.weight"), vec![HEADS * HD, D], 1.0, &mut rng);
        if arch == "qwen2" {
            add(n("attn_q.bias"), vec![HEADS * HD], 1.0, &mut rng);
            add(n("attn_k.bias"), vec![KV_HEADS * HD], 1.0, &mut rng);
            add(n("attn_v.bias"), vec![KV_HEADS * HD], 1.0, &mut rng);
        }
        if arch == "gemma3" {
            add(n("attn_q_norm.weight"), vec![HD], 1.0, &mut rng);
            add(n("attn_k_norm.weight"), vec![HD], 1.0, &mut rng);
            add(n("post_attention_norm.weight"), vec![D], 1.0, &mut rng);
            add(n("post_ffw_norm.weight"), vec![D], 1.0, &mut rng);
        }
        add(n("ffn_norm.weight"), vec![D], 1.0, &mut rng);
        add(n("ffn_gate.weight"), vec![D, FFN], 1.0, &mut rng);
        add(n("ffn_up.weight"), vec![D, FFN], 1.0, &mut rng);
        add(n("ffn_down.weight"), vec![FFN, D], 1.0, &mut rng);
    }
    add("output_norm.weight".into(), vec![D], 1.0, &mut rng);
    if !tied {
        add("output.weight".into(), vec![D, VOCAB], 1.0, &mut rng);
    }
    if rope_freqs {
        t.push(("rope_freqs.weight".into(), vec![HD / 2], vec![1.0, 4.0, 1.5, 8.0]));
    }
    let mut w = GgufWriter::default();
    let k = |s: &str| format!("{arch}.{s}");
    w.kv("general.architecture", Value::String(arch.into()))
        .kv(&k("block_count"), Value::U32(LAYERS as u32))
        .kv(&k("embedding_length"), Value::U32(D as u32))
        .kv(&k("feed_forward_length"), Value::U32(FFN as u32))
        .kv(&k("context_length"), Value::U32(256))
        .kv(&k("attention.head_count"), Value::U32(HEADS as u32))
        .kv(&k("attention.head_count_kv"), Value::U32(KV_HEADS as u32))
        .kv(&k("rope.freq_base"), Value::F32(500.0))
        .kv(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-6));
    if arch == "gemma3" {
        // Layer 0 slides (window 5, RoPE base 10000 by default), layer 1 is global.
        w.kv(&k("attention.sliding_window"), Value::U32(GEMMA_WINDOW as u32))
            .kv(&k("attention.sliding_window_pattern"), Value::Array(vec![Value::Bool(true), Value::Bool(false)]))
            .kv(&k("final_logit_softcapping"), Value::F32(GEMMA_SOFTCAP as f32));
    }
    if let Some(s) = linear_scale {
        w.kv(&k("rope.scaling.type"), Value::String("linear".into())).kv(&k("rope.scaling.factor"), Value::F32(s));
    }
    for (name, dims, data) in &t {
        let dims64: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
        w.tensor(name, &dims64, 0, data.iter().flat_map(|v| v.to_le_bytes()).collect());
    }
    (w.to_bytes(), t)
}

/// The whole forward pass in f64, one token at a time, straight from the definitions.
fn reference(t: &Tensors, arch: &str, tokens: &[u32], linear_scale: f64) -> Vec<f64> {
    let get = |name: &str| -> Vec<f64> {
        t.iter().find(|x| x.0 == name).map(|x| x.2.iter().map(|&v| v as f64).collect()).unwrap_or_default()
    };
    let matvec = |w: &[f64], x: &[f64]| -> Vec<f64> {
        w.chunks(x.len()).map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
    };
    let norm = |x: &[f64], w: &[f64]| -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        x.iter().zip(w).map(|(v, g)| v / (ms + 1e-6f32 as f64).sqrt() * g).collect()
    };
    let gemma = arch == "gemma3";
    let freqs = get("rope_freqs.weight");
    let rope = |v: &mut [f64], pos: usize, base: f64| {
        for i in 0..HD / 2 {
            let f = if freqs.is_empty() { 1.0 } else { freqs[i] };
            let theta = pos as f64 / linear_scale * base.powf(-2.0 * i as f64 / HD as f64) / f;
            let (a, b) = if arch == "llama" { (2 * i, 2 * i + 1) } else { (i, i + HD / 2) };
            let (x0, x1) = (v[a], v[b]);
            v[a] = x0 * theta.cos() - x1 * theta.sin();
            v[b] = x0 * theta.sin() + x1 * theta.cos();
        }
    };
    let mut keys: Vec<Vec<Vec<f64>>> = vec![Vec::new(); LAYERS];
    let mut values: Vec<Vec<Vec<f64>>> = vec![Vec::new(); LAYERS];
    let embd = get("token_embd.weight");
    let mut logits = Vec::new();
    for (pos, &tok) in tokens.iter().enumerate() {
        let mut x: Vec<f64> = embd[tok as usize * D..][..D].to_vec();
        if gemma {
            x.iter_mut().for_each(|v| *v *= (D as f64).sqrt());
        }
        for l in 0..LAYERS {
            // Gemma: layer 0 has a sliding window and RoPE base 10000.
            let (window, base) = if gemma && l == 0 { (GEMMA_WINDOW, 10000.0) } else { (usize::MAX, 500.0) };
            let n = |s: &str| get(&format!("blk.{l}.{s}"));
            let h = norm(&x, &n("attn_norm.weight"));
            let add_bias = |mut v: Vec<f64>, b: Vec<f64>| {
                v.iter_mut().zip(b.iter().chain(std::iter::repeat(&0.0))).for_each(|(a, b)| *a += b);
                v
            };
            let mut q = add_bias(matvec(&n("attn_q.weight"), &h), n("attn_q.bias"));
            let mut k = add_bias(matvec(&n("attn_k.weight"), &h), n("attn_k.bias"));
            let v = add_bias(matvec(&n("attn_v.weight"), &h), n("attn_v.bias"));
            if gemma {
                q = q.chunks(HD).flat_map(|h| norm(h, &n("attn_q_norm.weight"))).collect();
                k = k.chunks(HD).flat_map(|h| norm(h, &n("attn_k_norm.weight"))).collect();
            }
            q.chunks_mut(HD).for_each(|hq| rope(hq, pos, base));
            k.chunks_mut(HD).for_each(|hk| rope(hk, pos, base));
            keys[l].push(k);
            values[l].push(v);
            let mut attn = vec![0.0; HEADS * HD];
            for head in 0..HEADS {
                let kvh = head / (HEADS / KV_HEADS);
                let qh = &q[head * HD..][..HD];
                let first = (pos + 1).saturating_sub(window);
                let scores: Vec<f64> = keys[l][first..]
                    .iter()
                    .map(|k| qh.iter().zip(&k[kvh * HD..][..HD]).map(|(a, b)| a * b).sum::<f64>() / (HD as f64).sqrt())
                    .collect();
                let m = scores.iter().copied().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (p, ep) in (first..).zip(&e) {
                    for i in 0..HD {
                        attn[head * HD + i] += ep / z * values[l][p][kvh * HD + i];
                    }
                }
            }
            let mut o = matvec(&n("attn_output.weight"), &attn);
            if gemma {
                o = norm(&o, &n("post_attention_norm.weight"));
            }
            x.iter_mut().zip(o).for_each(|(a, b)| *a += b);
            let h = norm(&x, &n("ffn_norm.weight"));
            let g = matvec(&n("ffn_gate.weight"), &h);
            let u = matvec(&n("ffn_up.weight"), &h);
            let gelu =
                |g: f64| 0.5 * g * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g)).tanh());
            let act = |g: f64| if gemma { gelu(g) } else { g / (1.0 + (-g).exp()) };
            let a: Vec<f64> = g.iter().zip(&u).map(|(g, u)| act(*g) * u).collect();
            let mut down = matvec(&n("ffn_down.weight"), &a);
            if gemma {
                down = norm(&down, &n("post_ffw_norm.weight"));
            }
            x.iter_mut().zip(down).for_each(|(a, b)| *a += b);
        }
        let h = norm(&x, &get("output_norm.weight"));
        let out = get("output.weight");
        logits = matvec(if out.is_empty() { &embd } else { &out }, &h);
        if gemma {
            logits.iter_mut().for_each(|v| *v = GEMMA_SOFTCAP * (*v / GEMMA_SOFTCAP).tanh());
        }
    }
    logits
}

fn check(arch: &str, tied: bool, rope_freqs: bool, linear_scale: Option<f32>) {
    let (bytes, tensors) = random_model(arch, 42, tied, rope_freqs, linear_scale);
    let g = Gguf::parse(&bytes).unwrap();
    let c = Config::from_gguf(&g).unwrap();
    assert_eq!(c.tied_embeddings, tied);
    let w = Weights::from_gguf(&g, &c).unwrap();
    // 150 tokens: several prefill chunks (64 on the CPU, 128 on the GPU), then single steps.
    let tokens: Vec<u32> = (0..150u32).map(|i| (i * 7 + 3) % VOCAB as u32).collect();
    let want = reference(&tensors, arch, &tokens, linear_scale.unwrap_or(1.0) as f64);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1.0);
    let gpu = |f16: bool| -> Box<dyn Backend> {
        let gpu = Gpu::new_blocking(&GpuOptions { allow_f16: f16, ..GpuOptions::default() }).unwrap();
        assert_eq!(gpu.f16, f16, "the f16 run needs shader-f16 (lavapipe has it)");
        Box::new(GpuModel::load_blocking(gpu, &c, &w, 256).unwrap())
    };
    let backends: [(&str, Box<dyn Backend>, f64); 3] = [
        ("cpu", Box::new(CpuModel::reference(&c, &w, 256).unwrap()), 1e-4),
        ("gpu f32", gpu(false), 1e-4),
        ("gpu f16", gpu(true), 1e-2),
    ];
    for (name, mut model, tol) in backends {
        let mut got = model.forward_full(&tokens[..140]).unwrap();
        for &t in &tokens[140..] {
            got = model.forward_full(&[t]).unwrap();
        }
        let err = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        println!("{arch} on {name}: max |diff| {err:.2e}, logits up to {scale:.1}");
        assert!(err <= tol * scale, "{arch} on {name}: max |diff| {err} (logits up to {scale})");
    }
}

#[test]
fn llama_with_tied_embeddings() {
    check("llama", true, false, None);
}

#[test]
fn llama3_with_rope_freqs_and_untied_output() {
    check("llama", false, true, None);
}

#[test]
fn llama_with_linear_rope_scaling() {
    check("llama", true, false, Some(4.0));
}

#[test]
fn qwen2_with_biases_and_neox_rope() {
    check("qwen2", false, false, None);
}

#[test]
fn gemma3_with_sliding_window_post_norms_and_softcap() {
    check("gemma3", true, false, None);
}

#[test]
fn qwen2_without_biases_is_a_bad_model() {
    let (bytes, _) = random_model("llama", 1, true, false, None);
    // The same tensors declared as qwen2: the required biases are missing.
    let mut w = GgufWriter::default();
    let g = Gguf::parse(&bytes).unwrap();
    for (k, v) in &g.metadata {
        let key = k.replace("llama.", "qwen2.");
        let value = if k == "general.architecture" { Value::String("qwen2".into()) } else { v.clone() };
        w.kv(&key, value);
    }
    for t in &g.tensors {
        w.tensor(&t.name, &t.dims, 0, g.tensor(&t.name).unwrap().data.to_vec());
    }
    let b = w.to_bytes();
    let g = Gguf::parse(&b).unwrap();
    let c = Config::from_gguf(&g).unwrap();
    assert!(matches!(Weights::from_gguf(&g, &c), Err(webgpu_llm::Error::BadModel(m)) if m.contains("attn_q.bias")));
}

/// Several sequences after one shared prompt, one token each per placed step (n choices
/// decoded as one batch), each in its own region of the cache: every sequence's logits are
/// bit for bit those of the same tokens run alone, one at a time, on the same backend. Gemma's
/// window of 5 on layer 0 is crossed inside the shared prompt and inside each region.
#[test]
fn placed_steps_give_each_sequence_the_logits_it_gets_alone() {
    for arch in ["gemma3", "qwen2"] {
        let (bytes, _) = random_model(arch, 5, true, false, None);
        let g = Gguf::parse(&bytes).unwrap();
        let c = Config::from_gguf(&g).unwrap();
        let w = Weights::from_gguf(&g, &c).unwrap();
        let backend = |gpu: bool| -> Box<dyn Backend> {
            match gpu {
                true => {
                    let gpu = Gpu::new_blocking(&GpuOptions { allow_f16: false, ..GpuOptions::default() }).unwrap();
                    Box::new(GpuModel::load_blocking(gpu, &c, &w, 96).unwrap())
                }
                false => Box::new(CpuModel::new(&c, &w, 96).unwrap()),
            }
        };
        let prompt = [1u32, 4, 7, 10, 2, 5, 8, 11, 3];
        let (p, region, steps) = (prompt.len(), 8, 7);
        let seq = |b: usize, i: usize| ((b * 5 + i * 3 + 1) % VOCAB) as u32;
        for gpu in [false, true] {
            let mut batch = backend(gpu);
            batch.forward_full(&prompt).unwrap();
            let mut got = vec![Vec::new(); 3];
            for i in 0..steps {
                // Sequence 2 ends early: later steps run two tokens.
                let live: Vec<usize> = (0..3).filter(|&b| b < 2 || i < 4).collect();
                let tokens: Vec<u32> = live.iter().map(|&b| seq(b, i)).collect();
                let places: Vec<Place> =
                    live.iter().map(|&b| Place::branch(p, p + b * region, p + b * region + i)).collect();
                let rows = pollster::block_on(batch.forward_placed(&tokens, &places)).unwrap();
                for (&b, row) in live.iter().zip(rows) {
                    got[b].push(row);
                }
            }
            for (b, rows) in got.iter().enumerate() {
                let mut alone = backend(gpu);
                alone.forward_full(&prompt).unwrap();
                for (i, row) in rows.iter().enumerate() {
                    let want = alone.forward_full(&[seq(b, i)]).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(row), bits(&want), "{arch}, gpu {gpu}: sequence {b}, token {i}");
                }
            }
            // Sequence 0 continues the prompt: truncated to it, the cache is that one sequence.
            batch.truncate(p + steps);
            let next = batch.forward_full(&[9]).unwrap();
            let mut alone = backend(gpu);
            alone.forward_full(&prompt).unwrap();
            for i in 0..steps {
                alone.forward_full(&[seq(0, i)]).unwrap();
            }
            assert_eq!(next, alone.forward_full(&[9]).unwrap(), "{arch}, gpu {gpu}: sequence 0 continued");
        }
        // Places that make no sense are refused, and the backend goes on.
        let mut b = backend(false);
        b.forward_full(&prompt).unwrap();
        let bad = [
            vec![Place { slot: 20, shared: 21, own: 20 }],
            vec![Place::branch(p, 20, 20), Place::branch(p, 20, 20)],
            vec![Place::branch(p, 95, 96)],
        ];
        for places in bad {
            let tokens = vec![1; places.len()];
            assert!(pollster::block_on(b.forward_placed(&tokens, &places)).is_err(), "{places:?}");
        }
        assert_eq!(b.cached(), p);
    }
}

/// 200 turns on the GPU backend, with a reset every 10th turn and a turn cut short after one
/// token every 7th (an abort: the engine just stops stepping), alternating whole logits and
/// shortlists: after warm-up the driver's own counts of live buffers, their bytes, bind groups
/// and command encoders (wgpu-hal counters, not our bookkeeping) do not move, and a fixed
/// prompt's logits are bit-identical at turn 1 and after turn 200.
#[test]
fn gpu_memory_does_not_grow_over_200_turns() {
    let (bytes, _) = random_model("llama", 7, true, false, None);
    let g = Gguf::parse(&bytes).unwrap();
    let c = Config::from_gguf(&g).unwrap();
    let w = Weights::from_gguf(&g, &c).unwrap();
    let gpu = Gpu::new_blocking(&GpuOptions::default()).unwrap();
    let device = gpu.device.clone();
    let mut model = GpuModel::load_blocking(gpu, &c, &w, 64).unwrap();
    let counts = || {
        let h = device.get_internal_counters().hal;
        [h.buffers.read(), h.buffer_memory.read(), h.bind_groups.read(), h.command_encoders.read()]
    };
    let fixed = [1u32, 5, 9, 2];
    let first = model.forward_full(&fixed).unwrap();
    let mut warm = None;
    for turn in 1..=200u32 {
        if turn % 10 == 0 {
            model.truncate(0);
        }
        // Keep the cache as a conversation would, short of the 64-position context.
        if model.cached() > 48 {
            model.truncate(8);
        }
        let prompt: Vec<u32> = (0..1 + turn % 4).map(|i| (turn * 3 + i) % VOCAB as u32).collect();
        let want = match turn % 2 {
            0 => LogitsRequest::Full,
            _ => LogitsRequest::Shortlist { top: 3, ids: vec![turn % VOCAB as u32] },
        };
        model.forward_blocking(&prompt, &want).unwrap();
        let steps = if turn % 7 == 0 { 1 } else { 3 };
        for s in 0..steps {
            model.forward_blocking(&[(turn + s) % VOCAB as u32], &want).unwrap();
        }
        if turn == 20 {
            warm = Some(counts());
        }
    }
    let end = counts();
    let warm = warm.unwrap();
    println!("live buffers, buffer bytes, bind groups, command encoders: after 20 turns {warm:?}, after 200 {end:?}");
    assert!(warm[0] > 0 && warm[1] > 0, "the counters count: {warm:?}");
    assert_eq!(end, warm, "GPU objects after 200 turns = after 20");
    model.truncate(0);
    assert_eq!(model.forward_full(&fixed).unwrap(), first, "the same logits at turn 1 and after 200");
}

/// The tiny Gemma 3 model with its metadata changed by `edit` (a key removed when it returns None).
fn gemma_with(edit: impl Fn(&str, &Value) -> Option<Value>) -> Vec<u8> {
    let (bytes, _) = random_model("gemma3", 3, true, false, None);
    let g = Gguf::parse(&bytes).unwrap();
    let mut w = GgufWriter::default();
    for (k, v) in &g.metadata {
        if let Some(v) = edit(k, v) {
            w.kv(k, v);
        }
    }
    for t in &g.tensors {
        w.tensor(&t.name, &t.dims, 0, g.tensor(&t.name).unwrap().data.to_vec());
    }
    w.to_bytes()
}

fn config_error(bytes: &[u8]) -> webgpu_llm::Error {
    Config::from_gguf(&Gguf::parse(bytes).unwrap()).expect_err("the config is refused")
}

#[test]
fn gemma3_sliding_window_keys_are_checked() {
    const WINDOW: &str = "gemma3.attention.sliding_window";
    const PATTERN: &str = "gemma3.attention.sliding_window_pattern";
    type Edit = Box<dyn Fn(&str, &Value) -> Option<Value>>;
    let cases: [(&str, Edit); 5] = [
        ("missing window", Box::new(|k, v| (k != WINDOW).then(|| v.clone()))),
        (
            "window not a number",
            Box::new(|k, v| Some(if k == WINDOW { Value::String("512".into()) } else { v.clone() })),
        ),
        ("window 0", Box::new(|k, v| Some(if k == WINDOW { Value::U32(0) } else { v.clone() }))),
        (
            "pattern of 3 layers for 2",
            Box::new(|k, v| Some(if k == PATTERN { Value::Array(vec![Value::Bool(true); 3]) } else { v.clone() })),
        ),
        (
            "pattern of strings",
            Box::new(|k, v| {
                Some(if k == PATTERN { Value::Array(vec![Value::String("x".into()); 2]) } else { v.clone() })
            }),
        ),
    ];
    for (what, edit) in cases {
        let err = config_error(&gemma_with(edit));
        assert_eq!(err.code(), "bad_model", "{what}: {err}");
        assert!(err.to_string().contains("sliding_window"), "{what}: the error names the key: {err}");
    }
    // Without a pattern key, Gemma 3's fixed pattern: five sliding layers, then a global one.
    let c = Config::from_gguf(&Gguf::parse(&gemma_with(|k, v| (k != PATTERN).then(|| v.clone()))).unwrap()).unwrap();
    assert_eq!(c.swa_layers, [true, true]);
    // A period as the pattern key (llama.cpp's set_swa_pattern): period 2 slides layer 0 only.
    let c = Config::from_gguf(
        &Gguf::parse(&gemma_with(|k, v| Some(if k == PATTERN { Value::U32(2) } else { v.clone() }))).unwrap(),
    )
    .unwrap();
    assert_eq!(c.swa_layers, [true, false]);
    assert_eq!((c.window(0), c.window(1)), (Some(GEMMA_WINDOW), None));
    assert_eq!((c.rope_of(0), c.rope_of(1)), ((10_000.0, 1.0), (500.0, 1.0)));
}

#[test]
fn architectures_we_lack_are_unsupported_and_named() {
    for arch in ["phi3", "qwen3", "gemma2", "mamba"] {
        let bytes =
            gemma_with(|k, v| Some(if k == "general.architecture" { Value::String(arch.into()) } else { v.clone() }));
        let err = config_error(&bytes);
        assert_eq!(err.code(), "unsupported_model", "{arch}: {err}");
        assert!(err.to_string().contains(arch), "{arch}: {err}");
    }
}
