// y = W x for a weight matrix W kept in its GGUF block format, and the embedding lookup.
// The format's `load8` (shaders/formats/*.wgsl) is pasted beside this file; it reads `w`.
// A matrix larger than one storage binding arrives in parts of whole rows: each part is its
// own dispatch, whose rows land at `out_row0`.

struct MatParams {
    rows: u32,        // rows in this part
    cols: u32,        // a multiple of 32
    row_words: u32,   // words per row in `w`
    out_row0: u32,    // this part's first row in the whole matrix
    out_stride: u32,  // floats per token in `y` (the whole matrix's rows)
    accumulate: u32,  // 1: y += W x (a residual add for free)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: MatParams;
@group(0) @binding(4) var<uniform> step: Step;
@group(0) @binding(5) var<storage, read> tokens: array<u32>;

// Byte `i` of a block that starts at word `base`.
fn byte_at(base: u32, i: u32) -> u32 {
    return (w[base + i / 4u] >> (8u * (i % 4u))) & 255u;
}

// The 6-bit scale and min of group s of a Q4_K / Q5_K super-block whose 12 scale bytes start at
// word `base` (ggml's get_scale_min_k4).
fn scale_min_k4(base: u32, s: u32) -> vec2<f32> {
    if (s < 4u) {
        return vec2<f32>(f32(byte_at(base, s) & 63u), f32(byte_at(base, s + 4u) & 63u));
    }
    let sc = (byte_at(base, s + 4u) & 15u) | ((byte_at(base, s - 4u) >> 6u) << 4u);
    let m = (byte_at(base, s + 4u) >> 4u) | ((byte_at(base, s) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

fn store(i: u32, v: f32) {
    if (p.accumulate != 0u) {
        y[i] += v;
    } else {
        y[i] = v;
    }
}

// Embedding lookup: row tokens[t] of W (when it lies in this part) becomes y[t]. One invocation
// per 8 values of a row; grid (ceil(cols / 8 / 64), n).
@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    let item = gid.x;
    if (t >= step.n || item >= p.cols / 8u) {
        return;
    }
    let token = tokens[t];
    if (token < p.out_row0 || token >= p.out_row0 + p.rows) {
        return;
    }
    let e = load8((token - p.out_row0) * p.row_words, item / 4u, item % 4u);
    let o = t * p.cols + item * 8u;
    for (var i = 0u; i < 4u; i++) {
        y[o + i] = e.lo[i];
        y[o + 4u + i] = e.hi[i];
    }
}

// Matrix × vector (decode: one token). A workgroup of 64 computes MV_ROWS rows: each invocation
// takes eighths of groups of 32 columns, loads its 8 inputs once and uses them for every row,
// then the workgroup sums its partial dot products.
const MV_WG: u32 = 64u;
const MV_ROWS: u32 = 4u;
var<workgroup> mv_partial: array<f32, 256>; // MV_ROWS * MV_WG

@compute @workgroup_size(64)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) tid: u32) {
    let r0 = flat_wg(wid, nwg) * MV_ROWS;
    if (r0 >= p.rows) {
        return;
    }
    let items = p.cols / 8u;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var i = tid; i < items; i += MV_WG) {
        let g = i / 4u;
        let part = i % 4u;
        let xl = x[2u * i];
        let xh = x[2u * i + 1u];
        for (var r = 0u; r < MV_ROWS; r++) {
            if (r0 + r < p.rows) {
                let e = load8((r0 + r) * p.row_words, g, part);
                acc[r] += dot(e.lo, xl) + dot(e.hi, xh);
            }
        }
    }
    for (var r = 0u; r < MV_ROWS; r++) {
        mv_partial[r * MV_WG + tid] = acc[r];
    }
    workgroupBarrier();
    for (var half = MV_WG / 2u; half > 0u; half >>= 1u) {
        if (tid < half) {
            for (var r = 0u; r < MV_ROWS; r++) {
                mv_partial[r * MV_WG + tid] += mv_partial[r * MV_WG + tid + half];
            }
        }
        workgroupBarrier();
    }
    if (tid < MV_ROWS && r0 + tid < p.rows) {
        store(p.out_row0 + r0 + tid, mv_partial[tid * MV_WG]);
    }
}

// Tiled matrix × matrix (prefill: n tokens). A workgroup of 256 computes a tile of 64 rows ×
// 32 tokens; per step of 32 columns it dequantizes the 64 × 32 weight tile once into workgroup
// memory (each invocation one eighth-group) and each invocation accumulates 4 rows × 2 tokens.
const TM: u32 = 64u;
const TN: u32 = 32u;
var<workgroup> tile_w: array<f32, 2112>; // TM rows × 33 (padded against bank conflicts)
var<workgroup> tile_x: array<f32, 1056>; // TN tokens × 33

@compute @workgroup_size(256)
fn matmat(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let row0 = wid.x * TM;
    let tok0 = wid.y * TN;
    let n = step.n;
    let tr = tid % 16u;  // rows tr, tr + 16, tr + 32, tr + 48
    let tt = tid / 16u;  // tokens tt, tt + 16
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let groups = p.cols / 32u;
    for (var g = 0u; g < groups; g++) {
        // Weight tile: row tid / 4, columns 8 (tid % 4) ..
        let lr = tid / 4u;
        let part = tid % 4u;
        var e = Eight(vec4<f32>(0.0), vec4<f32>(0.0));
        if (row0 + lr < p.rows) {
            e = load8((row0 + lr) * p.row_words, g, part);
        }
        for (var i = 0u; i < 4u; i++) {
            tile_w[lr * 33u + part * 8u + i] = e.lo[i];
            tile_w[lr * 33u + part * 8u + 4u + i] = e.hi[i];
        }
        // Input tile: token tid / 8, columns 4 (tid % 8) ..
        let lt = tid / 8u;
        let c4 = tid % 8u;
        var xv = vec4<f32>(0.0);
        if (tok0 + lt < n) {
            xv = x[((tok0 + lt) * p.cols + g * 32u) / 4u + c4];
        }
        for (var i = 0u; i < 4u; i++) {
            tile_x[lt * 33u + c4 * 4u + i] = xv[i];
        }
        workgroupBarrier();
        for (var k = 0u; k < 32u; k++) {
            let x0 = tile_x[tt * 33u + k];
            let x1 = tile_x[(tt + 16u) * 33u + k];
            for (var r = 0u; r < 4u; r++) {
                let wv = tile_w[(tr + 16u * r) * 33u + k];
                acc[2u * r] += wv * x0;
                acc[2u * r + 1u] += wv * x1;
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let row = row0 + tr + 16u * r;
        if (row < p.rows) {
            for (var j = 0u; j < 2u; j++) {
                let t = tok0 + tt + 16u * j;
                if (t < n) {
                    store(t * p.out_stride + p.out_row0 + row, acc[2u * r + j]);
                }
            }
        }
    }
}
