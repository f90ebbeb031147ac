// Rotary position embedding of the queries and keys of a step, in place. The cos/sin of every
// (position, pair) come from a table computed once in f64 on the CPU, so no large angle ever
// meets a GPU's approximate sin.

struct RopeParams {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    rope_dim: u32,   // rotated dimensions per head (the rest pass through)
    neox: u32,       // 1: pair i with i + rope_dim / 2; 0: pair 2i with 2i + 1
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>; // [position][pair] = (cos, sin)
@group(0) @binding(3) var<uniform> p: RopeParams;
@group(0) @binding(4) var<uniform> step: Step;

fn rotate(i0: u32, i1: u32, cs: vec2<f32>, is_q: bool) {
    if (is_q) {
        let a = q[i0];
        let b = q[i1];
        q[i0] = a * cs.x - b * cs.y;
        q[i1] = a * cs.y + b * cs.x;
    } else {
        let a = k[i0];
        let b = k[i1];
        k[i0] = a * cs.x - b * cs.y;
        k[i1] = a * cs.y + b * cs.x;
    }
}

// One invocation per (token, head, pair); grid of 64-wide workgroups over all of them.
@compute @workgroup_size(64)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
    let idx = flat_wg(wid, nwg) * 64u + tid;
    let half = p.rope_dim / 2u;
    let heads = p.n_heads + p.n_kv_heads;
    if (idx >= step.n * heads * half) {
        return;
    }
    let i = idx % half;
    let h = (idx / half) % heads;
    let t = idx / (half * heads);
    let cs = table[(step.start + t) * half + i];
    var a = 2u * i;
    var b = 2u * i + 1u;
    if (p.neox != 0u) {
        a = i;
        b = i + half;
    }
    if (h < p.n_heads) {
        let base = (t * p.n_heads + h) * p.head_dim;
        rotate(base + a, base + b, cs, true);
    } else {
        let base = (t * p.n_kv_heads + h - p.n_heads) * p.head_dim;
        rotate(base + a, base + b, cs, false);
    }
}
