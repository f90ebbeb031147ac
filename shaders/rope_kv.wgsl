// Rotary position embedding fused into the KV-cache write. Reads a step's q|k|v rows (the
// fused projection's output), writes the rotated queries to `q`, and appends the rotated keys
// and the values to one layer's cache at the tokens' slots (`places`), in the cache's element
// type (f16 when the device has shader-f16). The cos/sin of every (position, pair) come from a
// table computed once in f64 on the CPU, so no large angle ever meets a GPU's approximate sin.

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

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<vec2<f32>>; // [position][pair] = (cos, sin)
@group(0) @binding(2) var<storage, read_write> q: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<kv_t>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<kv_t>;
@group(0) @binding(5) var<uniform> p: RopeParams;
@group(0) @binding(6) var<uniform> step: Step;
@group(0) @binding(7) var<storage, read> places: array<Place>;

// Element d of the head that starts at `base`, rotated by position `pos`.
fn rotated(base: u32, d: u32, pos: u32) -> f32 {
    if (d >= p.rope_dim) {
        return qkv[base + d];
    }
    let half = p.rope_dim / 2u;
    var i = d / 2u;           // the pair
    var a = 2u * i;           // its two elements
    var first = d % 2u == 0u; // d is the pair's first element
    if (p.neox != 0u) {
        i = d % half;
        a = i;
        first = d < half;
    }
    let b = select(a + 1u, a + half, p.neox != 0u);
    let cs = table[pos * half + i];
    let x0 = qkv[base + a];
    let x1 = qkv[base + b];
    return select(x0 * cs.y + x1 * cs.x, x0 * cs.x - x1 * cs.y, first);
}

// One invocation per element of the step's q|k|v rows; grid of 64-wide workgroups.
@compute @workgroup_size(64)
fn rope_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) tid: u32) {
    let idx = flat_wg(wid, nwg) * 64u + tid;
    let hd = p.head_dim;
    let q_dim = p.n_heads * hd;
    let kv_dim = p.n_kv_heads * hd;
    let row = q_dim + 2u * kv_dim;
    if (idx >= step.n * row) {
        return;
    }
    let t = idx / row;
    let e = idx % row;
    let d = e % hd;
    let base = idx - d;
    let pos = places[t].pos;
    let slot = places[t].slot;
    if (e < q_dim) {
        q[t * q_dim + e] = rotated(base, d, pos);
    } else if (e < q_dim + kv_dim) {
        k_cache[slot * kv_dim + e - q_dim] = kv_t(rotated(base, d, pos));
    } else {
        v_cache[slot * kv_dim + e - q_dim - kv_dim] = kv_t(qkv[idx]);
    }
}
