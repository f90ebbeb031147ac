// Element-wise kernels over a step's n rows of `len` values: a = f(a, b).

struct EwParams {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: EwParams;
@group(0) @binding(3) var<uniform> step: Step;

fn index(wid: vec3<u32>, nwg: vec3<u32>, tid: u32) -> u32 {
    return flat_wg(wid, nwg) * 64u + tid;
}

// SwiGLU: a = silu(a) * b, with a the gate and b the up projection.
@compute @workgroup_size(64)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) tid: u32) {
    let i = index(wid, nwg, tid);
    if (i < step.n * p.len) {
        let g = a[i];
        a[i] = g / (1.0 + exp(-g)) * b[i];
    }
}

// Bias: every row of a gets b (len values) added.
@compute @workgroup_size(64)
fn add_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) tid: u32) {
    let i = index(wid, nwg, tid);
    if (i < step.n * p.len) {
        a[i] += b[i % p.len];
    }
}
