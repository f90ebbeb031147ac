// RMSNorm: out[t] = x[t] / sqrt(mean(x[t]²) + eps) * weight. One workgroup per token; with
// `last_only` only the step's last token, written to row 0 (the input of the output head).

struct NormParams {
    dim: u32,
    eps: f32,
    last_only: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: NormParams;
@group(0) @binding(4) var<uniform> step: Step;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn rmsnorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    var t = wid.x;
    var o = wid.x;
    if (p.last_only != 0u) {
        t = step.n - 1u;
        o = 0u;
    }
    if (t >= step.n) {
        return;
    }
    let base = t * p.dim;
    var sum = 0.0;
    for (var i = tid; i < p.dim; i += WG) {
        sum += x[base + i] * x[base + i];
    }
    partial[tid] = sum;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        if (tid < half) {
            partial[tid] += partial[tid + half];
        }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial[0] / f32(p.dim) + p.eps);
    for (var i = tid; i < p.dim; i += WG) {
        out[o * p.dim + i] = x[base + i] * scale * weight[i];
    }
}
