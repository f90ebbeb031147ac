// RMSNorms that cannot ride in a matmul's prologue, for Gemma 3:
// - `head_norm`: each q and k head of a step's q|k|v rows normalised in place with its own
//   weights (q_norm for the query heads, k_norm for the key heads), before RoPE;
// - `add_norm`: x += rmsnorm(y) · w, the post-attention and post-FFN norms with their residual
//   add (the norm needs the whole row, which no single matmul workgroup has).
// One workgroup of 64 per (head, token) or per token.

struct NormParams {
    n_heads: u32,    // head_norm: query heads, then n_kv_heads key heads
    n_kv_heads: u32,
    dim: u32,        // floats normalised together: head_dim, or d_model for add_norm
    eps: f32,
}

@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read> w_a: array<f32>; // q_norm, or add_norm's weight
@group(0) @binding(2) var<storage, read> w_b: array<f32>; // k_norm
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<uniform> p: NormParams;
@group(0) @binding(5) var<uniform> step: Step;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, 64>;

// 1 / rms of the `p.dim` floats from `sum_sq`, this invocation's share of the sum of squares.
fn inv_rms(sum_sq: f32, tid: u32) -> f32 {
    partial[tid] = sum_sq;
    workgroupBarrier();
    if (tid == 0u) {
        var total = 0.0;
        for (var j = 0u; j < WG; j++) {
            total += partial[j];
        }
        partial[0] = inverseSqrt(total / f32(p.dim) + p.eps);
    }
    workgroupBarrier();
    return partial[0];
}

@compute @workgroup_size(64)
fn head_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let head = wid.x; // 0 .. n_heads + n_kv_heads: the q heads, then the k heads
    let t = wid.y;
    let row = (p.n_heads + 2u * p.n_kv_heads) * p.dim;
    let base = t * row + head * p.dim;
    var s = 0.0;
    for (var d = tid; d < p.dim; d += WG) {
        s += x[base + d] * x[base + d];
    }
    let scale = inv_rms(s, tid);
    for (var d = tid; d < p.dim; d += WG) {
        let wd = select(w_b[d], w_a[d], head < p.n_heads);
        x[base + d] = x[base + d] * scale * wd;
    }
}

@compute @workgroup_size(64)
fn add_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let base = wid.x * p.dim; // one workgroup per token
    var s = 0.0;
    for (var d = tid; d < p.dim; d += WG) {
        s += y[base + d] * y[base + d];
    }
    let scale = inv_rms(s, tid);
    for (var d = tid; d < p.dim; d += WG) {
        x[base + d] += y[base + d] * scale * w_a[d];
    }
}
