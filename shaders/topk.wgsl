// The GPU half of sampling: reduce the logits to a shortlist so that only a few hundred bytes
// cross back to the CPU, which finishes the sampler's exact algorithm (src/sampler.rs) on it.
//
// Everything is (logit bits, id) pairs ordered by logit descending, then id ascending: the
// sampler's order. `topk` sorts chunks of 1024 logits in workgroup memory (bitonic) and keeps
// the best `keep` of each, then does the same to the survivors until one chunk is left. `logsumexp` gives the normalizer of the raw distribution (for log-probabilities) and
// `gather` copies the logits of chosen ids (those the penalties or logit_bias change).

struct TopkParams {
    count: u32,      // input items
    keep: u32,       // best items kept per chunk (at most CHUNK / 2)
    out_offset: u32, // where in `cout` this dispatch writes, in pairs
    from_logits: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> cin: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> cout: array<vec2<u32>>;
@group(0) @binding(3) var<uniform> p: TopkParams;
@group(0) @binding(4) var<storage, read> ids: array<u32>;

const WG: u32 = 256u;
const CHUNK: u32 = 1024u;
const NONE: f32 = -3.4028234e38; // -f32::MAX (Tint rejects a literal that rounds past it)
var<workgroup> sv: array<f32, 1024>;
var<workgroup> si: array<u32, 1024>;

// Does (va, ia) come before (vb, ib)?
fn before(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

// Bitonic sort of the chunk in workgroup memory, best first; then write its best `keep`.
fn sort_and_write(chunk: u32, tid: u32) {
    for (var k = 2u; k <= CHUNK; k <<= 1u) {
        for (var j = k >> 1u; j > 0u; j >>= 1u) {
            for (var r = 0u; r < CHUNK / 2u / WG; r++) {
                let pair = tid + r * WG;
                let lo = (pair / j) * 2u * j + pair % j;
                let hi = lo + j;
                let best_first = (lo & k) == 0u;
                let hi_first = before(sv[hi], si[hi], sv[lo], si[lo]);
                if (hi_first == best_first) {
                    let v = sv[lo];
                    let i = si[lo];
                    sv[lo] = sv[hi];
                    si[lo] = si[hi];
                    sv[hi] = v;
                    si[hi] = i;
                }
            }
            workgroupBarrier();
        }
    }
    for (var i = tid; i < p.keep; i += WG) {
        cout[p.out_offset + chunk * p.keep + i] = vec2<u32>(bitcast<u32>(sv[i]), si[i]);
    }
}

// One chunk: the logits themselves (`from_logits`, ids are positions) or earlier survivors.
@compute @workgroup_size(256)
fn topk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let chunk = wid.x;
    for (var i = tid; i < CHUNK; i += WG) {
        let at = chunk * CHUNK + i;
        sv[i] = NONE;
        si[i] = 0xffffffffu;
        if (at < p.count && p.from_logits != 0u) {
            sv[i] = logits[at];
            si[i] = at;
        } else if (at < p.count) {
            sv[i] = bitcast<f32>(cin[at].x);
            si[i] = cin[at].y;
        }
    }
    workgroupBarrier();
    sort_and_write(chunk, tid);
}

// cout[0] = (max, Σ exp(logit - max)) over the first `count` logits. One workgroup.
@compute @workgroup_size(256)
fn logsumexp(@builtin(local_invocation_index) tid: u32) {
    var m = NONE;
    for (var i = tid; i < p.count; i += WG) {
        m = max(m, logits[i]);
    }
    sv[tid] = m;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        if (tid < half) {
            sv[tid] = max(sv[tid], sv[tid + half]);
        }
        workgroupBarrier();
    }
    let top = sv[0];
    workgroupBarrier();
    var s = 0.0;
    for (var i = tid; i < p.count; i += WG) {
        s += exp(logits[i] - top);
    }
    sv[tid] = s;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        if (tid < half) {
            sv[tid] += sv[tid + half];
        }
        workgroupBarrier();
    }
    if (tid == 0u) {
        cout[0] = vec2<u32>(bitcast<u32>(top), bitcast<u32>(sv[0]));
    }
}

// cout[out_offset + i] = (logits[ids[i]], ids[i]) for i < count.
@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i < p.count) {
        cout[p.out_offset + i] = vec2<u32>(bitcast<u32>(logits[ids[i]]), ids[i]);
    }
}
