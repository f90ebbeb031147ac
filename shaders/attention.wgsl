// Grouped-query causal attention over the KV cache, optionally within a sliding window. One
// workgroup per (query head, token): it walks the visible positions in tiles of 64 with an online softmax (running max and sum, the
// output rescaled whenever the max grows), so any context length fits in 64 scores of
// workgroup memory. Query head h reads KV head h / (n_heads / n_kv_heads).

struct AttnParams {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,   // at most 256
    scale: f32,      // usually 1 / sqrt(head_dim)
    window: u32,     // > 0: a query sees only the last `window` positions, itself included
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k_cache: array<kv_t>;
@group(0) @binding(2) var<storage, read> v_cache: array<kv_t>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: AttnParams;
@group(0) @binding(5) var<uniform> step: Step;
@group(0) @binding(6) var<storage, read> places: array<Place>;

const WG: u32 = 64u;
const MAX_HEAD_DIM: u32 = 256u;
var<workgroup> q_head: array<f32, MAX_HEAD_DIM>;
var<workgroup> weights: array<f32, 64>;
var<workgroup> shared_max: f32;
var<workgroup> shared_sum: f32;

// The cache slot of visible position number `i`.
fn slot_of(i: u32, first_shared: u32, n_shared: u32, own_first: u32) -> u32 {
    return select(own_first + i - n_shared, first_shared + i, i < n_shared);
}

@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let h = wid.x;
    let t = wid.y;
    let hd = p.head_dim;
    let kv_dim = p.n_kv_heads * hd;
    let kv_off = (h / (p.n_heads / p.n_kv_heads)) * hd;
    let q_off = (t * p.n_heads + h) * hd;
    for (var d = tid; d < hd; d += WG) {
        q_head[d] = q[q_off + d];
    }
    workgroupBarrier();

    // The visible slots in position order, numbered 0 .. seen: slots first_shared .. prefix,
    // then own_first ..= slot (Place::visible in src/backend.rs). A plain step's token t at
    // position start + t sees slots first .. start + t + 1.
    let pl = places[t];
    let first_pos = select(0u, pl.pos + 1u - p.window, p.window != 0u && pl.pos + 1u > p.window);
    let first_shared = min(first_pos, pl.prefix);
    let own_first = max(pl.own, first_pos + pl.slot - pl.pos);
    let n_shared = pl.prefix - first_shared;
    let seen = n_shared + pl.slot + 1u - own_first;
    var m = -3.0e38;                // running max of the scores
    var l = 0.0;                    // running sum of exp(score - m), kept by invocation 0
    var acc: array<f32, 4>;         // output dims tid, tid + 64, ... (head_dim <= 256)
    for (var base = 0u; base < seen; base += WG) {
        let pos = base + tid;
        var s = -3.0e38;
        if (pos < seen) {
            var dot_qk = 0.0;
            let kb = slot_of(pos, first_shared, n_shared, own_first) * kv_dim + kv_off;
            for (var d = 0u; d < hd; d++) {
                dot_qk += q_head[d] * f32(k_cache[kb + d]);
            }
            s = dot_qk * p.scale;
        }
        weights[tid] = s;
        workgroupBarrier();
        // One invocation reduces, the others wait: far cheaper than all of them re-reading the
        // tile on a CPU-emulated device, and no slower on a GPU for 64 values.
        if (tid == 0u) {
            var tile_max = m;
            for (var j = 0u; j < WG; j++) {
                tile_max = max(tile_max, weights[j]);
            }
            shared_max = tile_max;
        }
        workgroupBarrier();
        let new_max = shared_max;
        let correction = exp(m - new_max);
        m = new_max;
        weights[tid] = select(0.0, exp(s - new_max), pos < seen);
        workgroupBarrier();
        if (tid == 0u) {
            var tile_sum = 0.0;
            for (var j = 0u; j < WG; j++) {
                tile_sum += weights[j];
            }
            l = l * correction + tile_sum;
        }
        let count = min(WG, seen - base);
        for (var j = 0u; j < 4u; j++) {
            let d = tid + j * WG;
            if (d < hd) {
                var o = acc[j] * correction;
                for (var i = 0u; i < count; i++) {
                    let slot = slot_of(base + i, first_shared, n_shared, own_first);
                    o += weights[i] * f32(v_cache[slot * kv_dim + kv_off + d]);
                }
                acc[j] = o;
            }
        }
        workgroupBarrier();
    }
    if (tid == 0u) {
        shared_sum = l;
    }
    workgroupBarrier();
    let total = shared_sum;
    for (var j = 0u; j < 4u; j++) {
        let d = tid + j * WG;
        if (d < hd) {
            out[q_off + d] = acc[j] / total;
        }
    }
}
