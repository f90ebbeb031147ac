//! The tensors of a model: their GGUF names, the shapes the config implies, and a
//! generic container that each backend fills with its own tensor type (CPU: f32 matrices).

use crate::error::{Error, Result};
use crate::gguf::{Gguf, TensorInfo, TensorView};
use crate::model::Config;

/// One transformer block's tensors.
#[derive(Debug)]
pub struct Layer<T> {
    pub attn_norm: T,
    pub wq: T,
    pub wk: T,
    pub wv: T,
    pub wo: T,
    pub bq: Option<T>,
    pub bk: Option<T>,
    pub bv: Option<T>,
    pub ffn_norm: T,
    pub w_gate: T,
    pub w_up: T,
    pub w_down: T,
    /// Per-head RMSNorm weights of q and k (`Config::qk_norm`).
    pub q_norm: Option<T>,
    pub k_norm: Option<T>,
    /// RMSNorm weights of the attention and FFN outputs (`Config::post_norms`).
    pub post_attn_norm: Option<T>,
    pub post_ffn_norm: Option<T>,
}

/// All tensors of the model.
#[derive(Debug)]
pub struct Weights<T> {
    pub embed: T,
    pub layers: Vec<Layer<T>>,
    pub out_norm: T,
    /// `None` when the output projection is tied to `embed`.
    pub output: Option<T>,
    /// Llama 3 RoPE frequency factors (one per rotated pair), when the file has them.
    pub rope_freqs: Option<T>,
}

/// A tensor's description: what shapes are checked against.
pub trait Described {
    fn info(&self) -> &TensorInfo;
}

impl Described for TensorView<'_> {
    fn info(&self) -> &TensorInfo {
        self.info
    }
}

impl Described for &TensorInfo {
    fn info(&self) -> &TensorInfo {
        self
    }
}

impl<'a> Weights<TensorView<'a>> {
    /// Find every tensor the config needs in a file and check its shape.
    pub fn from_gguf(g: &'a Gguf<'a>, c: &Config) -> Result<Self> {
        Weights::find(c, |name| g.tensor(name))
    }
}

impl<'a> Weights<&'a TensorInfo> {
    /// The descriptions of every tensor the config needs, from a tensor table (no data: how a
    /// streamed load plans where each tensor goes before its bytes arrive).
    pub fn from_table(tensors: &'a [TensorInfo], c: &Config) -> Result<Self> {
        Weights::find(c, |name| tensors.iter().find(|t| t.name == name))
    }
}

impl<T: Described + Copy> Weights<T> {
    /// Find every tensor the config needs through `lookup` and check its shape.
    pub fn find(c: &Config, lookup: impl Fn(&str) -> Option<T>) -> Result<Self> {
        let (d, q, kv, f, v) = (c.d_model, c.q_dim(), c.kv_dim(), c.ffn_dim, c.vocab_size);
        let get = |name: &str, shape: &[usize]| -> Result<T> {
            let t = lookup(name).ok_or_else(|| Error::BadModel(format!("tensor {name} is missing")))?;
            check_shape(t.info(), shape)?;
            Ok(t)
        };
        let opt = |name: &str, shape: &[usize]| -> Result<Option<T>> {
            match lookup(name) {
                None => Ok(None),
                Some(_) => get(name, shape).map(Some),
            }
        };
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}");
            let bias = |s: &str, len: usize| -> Result<Option<T>> {
                if c.attn_bias {
                    get(&n(s), &[len]).map(Some)
                } else {
                    opt(&n(s), &[len])
                }
            };
            let when = |needed: bool, s: &str, len: usize| -> Result<Option<T>> {
                if needed {
                    get(&n(s), &[len]).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                attn_norm: get(&n("attn_norm.weight"), &[d])?,
                wq: get(&n("attn_q.weight"), &[d, q])?,
                wk: get(&n("attn_k.weight"), &[d, kv])?,
                wv: get(&n("attn_v.weight"), &[d, kv])?,
                wo: get(&n("attn_output.weight"), &[q, d])?,
                bq: bias("attn_q.bias", q)?,
                bk: bias("attn_k.bias", kv)?,
                bv: bias("attn_v.bias", kv)?,
                ffn_norm: get(&n("ffn_norm.weight"), &[d])?,
                w_gate: get(&n("ffn_gate.weight"), &[d, f])?,
                w_up: get(&n("ffn_up.weight"), &[d, f])?,
                w_down: get(&n("ffn_down.weight"), &[f, d])?,
                q_norm: when(c.qk_norm, "attn_q_norm.weight", c.head_dim)?,
                k_norm: when(c.qk_norm, "attn_k_norm.weight", c.head_dim)?,
                post_attn_norm: when(c.post_norms, "post_attention_norm.weight", d)?,
                post_ffn_norm: when(c.post_norms, "post_ffw_norm.weight", d)?,
            });
        }
        Ok(Weights {
            embed: get("token_embd.weight", &[d, v])?,
            layers,
            out_norm: get("output_norm.weight", &[d])?,
            output: opt("output.weight", &[d, v])?,
            rope_freqs: opt("rope_freqs.weight", &[c.rope_dim / 2])?,
        })
    }
}

impl<T> Weights<T> {
    /// Convert every tensor with `f`, keeping the structure (how a backend loads the model).
    pub fn try_map<'a, U>(&'a self, mut f: impl FnMut(&'a T) -> Result<U>) -> Result<Weights<U>> {
        let opt = |t: &'a Option<T>, f: &mut dyn FnMut(&'a T) -> Result<U>| t.as_ref().map(f).transpose();
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            layers.push(Layer {
                attn_norm: f(&l.attn_norm)?,
                wq: f(&l.wq)?,
                wk: f(&l.wk)?,
                wv: f(&l.wv)?,
                wo: f(&l.wo)?,
                bq: opt(&l.bq, &mut f)?,
                bk: opt(&l.bk, &mut f)?,
                bv: opt(&l.bv, &mut f)?,
                ffn_norm: f(&l.ffn_norm)?,
                w_gate: f(&l.w_gate)?,
                w_up: f(&l.w_up)?,
                w_down: f(&l.w_down)?,
                q_norm: opt(&l.q_norm, &mut f)?,
                k_norm: opt(&l.k_norm, &mut f)?,
                post_attn_norm: opt(&l.post_attn_norm, &mut f)?,
                post_ffn_norm: opt(&l.post_ffn_norm, &mut f)?,
            });
        }
        Ok(Weights {
            embed: f(&self.embed)?,
            layers,
            out_norm: f(&self.out_norm)?,
            output: opt(&self.output, &mut f)?,
            rope_freqs: opt(&self.rope_freqs, &mut f)?,
        })
    }

    /// Every tensor.
    pub fn all(&self) -> Vec<&T> {
        let mut all = Vec::new();
        self.try_map(|t| {
            all.push(t);
            Ok(())
        })
        .expect("collecting cannot fail");
        all
    }

    /// The output projection: `output`, or the embedding when tied.
    pub fn lm_head(&self) -> &T {
        self.output.as_ref().unwrap_or(&self.embed)
    }
}

/// `shape` is in ggml order (the contiguous dimension first).
fn check_shape(t: &TensorInfo, shape: &[usize]) -> Result<()> {
    let dims = &t.dims;
    if dims.len() != shape.len() || dims.iter().zip(shape).any(|(&a, &b)| a != b as u64) {
        return Err(Error::BadModel(format!(
            "tensor {} has shape {dims:?}, the config implies {shape:?}",
            t.name
        )));
    }
    Ok(())
}
