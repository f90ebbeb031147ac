//! Hyper-parameters of a decoder-only transformer (Llama, Qwen2, Gemma 3), read from GGUF metadata.

use crate::error::{Error, Result};
use crate::gguf::Header;

/// The architectures this runtime implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama 2/3, SmolLM, TinyLlama, Mistral: no attention biases, "normal" RoPE.
    Llama,
    /// Qwen2 / Qwen2.5: biases on q/k/v, NeoX-style RoPE.
    Qwen2,
    /// Gemma 3: scaled embeddings, norms before and after attention and the FFN, RMSNorm on each
    /// q and k head, a GELU-gated FFN, sliding-window attention on five layers of six.
    Gemma3,
}

/// The gate's activation in the gated FFN: `down(act(gate(x)) * up(x))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// SwiGLU (Llama, Qwen2).
    Silu,
    /// GELU, tanh approximation (Gemma).
    GeluTanh,
}

/// How RoPE pairs up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeStyle {
    /// Adjacent pairs (x[2i], x[2i+1]): GGUF Llama files have q/k permuted for this.
    Normal,
    /// Halves (x[i], x[i + d/2]), as in GPT-NeoX and Qwen2.
    Neox,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Config {
    pub arch: Arch,
    /// `general.name`, for display.
    pub name: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    /// The context length the model was trained for.
    pub context_length: usize,
    pub rope_base: f32,
    /// Dimensions of each head that RoPE rotates (the rest pass through).
    pub rope_dim: usize,
    /// Linear RoPE scaling: positions are divided by this factor.
    pub rope_linear_scale: f32,
    pub rope_style: RopeStyle,
    pub rms_eps: f32,
    /// The output projection is the token embedding (no `output.weight`).
    pub tied_embeddings: bool,
    /// q/k/v projections have biases.
    pub attn_bias: bool,
    /// Token embeddings are multiplied by this (Gemma: √d_model).
    pub embed_scale: f32,
    /// Each q and k head goes through its own RMSNorm before RoPE (Gemma 3).
    pub qk_norm: bool,
    /// The attention and FFN outputs go through an RMSNorm before the residual add (Gemma 3).
    pub post_norms: bool,
    pub activation: Activation,
    /// Attention scores are `q·k · attn_scale` (usually 1/√head_dim).
    pub attn_scale: f32,
    /// Sliding-window attention: a query sees the last `sliding_window` positions (itself
    /// included) on the layers marked in `swa_layers`; 0 when the model has none.
    pub sliding_window: usize,
    pub swa_layers: Vec<bool>,
    /// RoPE base of the sliding-window layers (their RoPE is never scaled).
    pub rope_base_swa: f32,
    /// Logits become `cap · tanh(logits / cap)`.
    pub final_softcap: Option<f32>,
    /// Bytes of tensor data in the file: what a decoded token must read at least once.
    pub file_weight_bytes: u64,
}

/// Refuse dimensions beyond what any real model has: they only come from hostile files and would
/// drive huge allocations.
const MAX_DIM: u64 = 1 << 20;

impl Config {
    pub fn from_gguf(g: &Header) -> Result<Config> {
        let arch_name = g.str("general.architecture")?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "gemma3" => Arch::Gemma3,
            other => {
                return Err(Error::UnsupportedModel(format!(
                    "architecture {other:?} is not supported (supported: llama, qwen2, gemma3)"
                )))
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let dim = |k: &str| -> Result<usize> {
            let v = g.u64(&key(k))?;
            if v == 0 || v > MAX_DIM {
                return Err(Error::BadModel(format!("{} = {v} is out of range", key(k))));
            }
            Ok(v as usize)
        };
        let n_layers = dim("block_count")?;
        let d_model = dim("embedding_length")?;
        let n_heads = dim("attention.head_count")?;
        let n_kv_heads = match g.u64_opt(&key("attention.head_count_kv"))? {
            Some(_) => dim("attention.head_count_kv")?,
            None => n_heads,
        };
        let head_dim = match g.u64_opt(&key("attention.key_length"))? {
            Some(_) => dim("attention.key_length")?,
            None => d_model / n_heads,
        };
        if let Some(v) = g.u64_opt(&key("attention.value_length"))? {
            if v as usize != head_dim {
                return Err(Error::UnsupportedModel(format!(
                    "value head size {v} differs from key head size {head_dim}"
                )));
            }
        }
        if n_heads % n_kv_heads != 0 {
            return Err(Error::BadModel(format!(
                "{n_heads} attention heads cannot be grouped over {n_kv_heads} KV heads"
            )));
        }
        if head_dim % 2 != 0 {
            return Err(Error::BadModel(format!("head size {head_dim} is odd")));
        }
        let rope_dim = match g.u64_opt(&key("rope.dimension_count"))? {
            Some(v) if v as usize <= head_dim && v % 2 == 0 => v as usize,
            Some(v) => return Err(Error::BadModel(format!("rope.dimension_count {v} is invalid"))),
            None => head_dim,
        };
        let rope_linear_scale = match g.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
            None | Some("none") => 1.0,
            Some("linear") => positive(g.f64_opt(&key("rope.scaling.factor"))?.unwrap_or(1.0), "rope.scaling.factor")?,
            Some(other) => return Err(Error::UnsupportedModel(format!("RoPE scaling {other:?} is not supported"))),
        };
        let rope_base = positive(g.f64_opt(&key("rope.freq_base"))?.unwrap_or(10_000.0), "rope.freq_base")?;
        let rms_eps = positive(
            g.f64_opt(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
            "attention.layer_norm_rms_epsilon",
        )?;
        let context_length = dim("context_length")?;

        let embd = g
            .tensor_info("token_embd.weight")
            .ok_or_else(|| Error::BadModel("tensor token_embd.weight is missing".into()))?;
        if embd.dims.len() != 2 || embd.dims[0] != d_model as u64 {
            return Err(Error::BadModel(format!(
                "token_embd.weight has shape {:?}, expected [{d_model}, vocab]",
                embd.dims
            )));
        }
        let vocab_size = embd.dims[1] as usize;
        let gemma = arch == Arch::Gemma3;

        let (sliding_window, swa_layers) = if gemma {
            let window = g
                .u64_opt(&key("attention.sliding_window"))?
                .ok_or_else(|| Error::BadModel(format!("{} is missing", key("attention.sliding_window"))))?;
            if window == 0 || window > MAX_DIM {
                return Err(Error::BadModel(format!("{} = {window} is out of range", key("attention.sliding_window"))));
            }
            (window as usize, swa_pattern(g, &key("attention.sliding_window_pattern"), n_layers)?)
        } else {
            (0, vec![false; n_layers])
        };
        let rope_base_swa = match g.f64_opt(&key("rope.freq_base_swa"))? {
            Some(v) => positive(v, "rope.freq_base_swa")?,
            None if gemma => 10_000.0,
            None => rope_base,
        };
        // Gemma 3 27B scales by 1/sqrt(d_model / n_heads), the others by 1/sqrt(head_dim)
        // (llama.cpp and gemma_pytorch tell the 27B by its 62 layers; HF's query_pre_attn_scalar).
        let attn_scale = match g.f64_opt(&key("attention.scale"))? {
            Some(v) => positive(v, "attention.scale")?,
            None if gemma && n_layers == 62 => 1.0 / ((d_model / n_heads) as f32).sqrt(),
            None => 1.0 / (head_dim as f32).sqrt(),
        };
        let final_softcap = match g.f64_opt(&key("final_logit_softcapping"))? {
            Some(v) => Some(positive(v, "final_logit_softcapping")?),
            None => None,
        };

        Ok(Config {
            arch,
            name: g.get("general.name").and_then(|v| v.as_str()).unwrap_or(arch_name).to_string(),
            n_layers,
            d_model,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: dim("feed_forward_length")?,
            vocab_size,
            context_length,
            rope_base,
            rope_dim,
            rope_linear_scale,
            rope_style: match arch {
                Arch::Llama => RopeStyle::Normal,
                Arch::Qwen2 | Arch::Gemma3 => RopeStyle::Neox,
            },
            rms_eps,
            tied_embeddings: g.tensor_info("output.weight").is_none(),
            file_weight_bytes: g.tensor_bytes(),
            attn_bias: arch == Arch::Qwen2,
            embed_scale: if gemma { (d_model as f32).sqrt() } else { 1.0 },
            qk_norm: gemma,
            post_norms: gemma,
            activation: if gemma { Activation::GeluTanh } else { Activation::Silu },
            attn_scale,
            sliding_window,
            swa_layers,
            rope_base_swa,
            final_softcap,
        })
    }

    /// The attention window of layer `li`: `Some(w)` on sliding-window layers.
    pub fn window(&self, li: usize) -> Option<usize> {
        self.swa_layers[li].then_some(self.sliding_window)
    }

    /// RoPE base and linear scale of layer `li`.
    pub fn rope_of(&self, li: usize) -> (f32, f32) {
        if self.swa_layers[li] {
            (self.rope_base_swa, 1.0)
        } else {
            (self.rope_base, self.rope_linear_scale)
        }
    }

    /// Width of the K (and V) vectors of one position.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Width of the Q vector (and of the attention output).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
}

/// Which layers use the sliding window. The key, when present, is either a period `n` (layer `i`
/// slides iff `i % n < n - 1`, llama.cpp's `set_swa_pattern`) or one bool per layer; without it
/// Gemma 3's fixed pattern applies: five local layers, then a global one.
fn swa_pattern(g: &Header, key: &str, n_layers: usize) -> Result<Vec<bool>> {
    let period_pattern = |n: usize| (0..n_layers).map(|i| n == 0 || i % n < n - 1).collect();
    let Some(v) = g.get(key) else {
        return Ok(period_pattern(6));
    };
    if let Some(n) = v.as_u64() {
        if n as usize > n_layers.max(6) {
            return Err(Error::BadModel(format!("{key} = {n} does not fit {n_layers} layers")));
        }
        return Ok(period_pattern(n as usize));
    }
    let items = v.as_array().ok_or_else(|| Error::BadModel(format!("{key} is neither a period nor an array")))?;
    if items.len() != n_layers {
        return Err(Error::BadModel(format!("{key} has {} entries for {n_layers} layers", items.len())));
    }
    items
        .iter()
        .map(|b| b.as_bool().ok_or_else(|| Error::BadModel(format!("{key} holds a value that is not a bool"))))
        .collect()
}

fn positive(v: f64, what: &str) -> Result<f32> {
    if v.is_finite() && v > 0.0 && v < f32::MAX as f64 {
        Ok(v as f32)
    } else {
        Err(Error::BadModel(format!("{what} = {v} is not a positive number")))
    }
}
