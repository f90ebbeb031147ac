// y = W x for a weight matrix W kept in its GGUF block format, and the embedding lookup.
// The format's `load8` (shaders/formats/*.wgsl) is pasted beside this file; it reads `w`.
// A matrix larger than one storage binding arrives in parts of whole rows: each part is its
// own dispatch, whose rows land at `out_row0`.
//
// What would otherwise be separate launches is fused in:
// - a prologue on the input: RMSNorm of x (`_norm` entries), or silu(gate) * up of an x whose
//   rows hold gate then up (`_swiglu_in` entries, for gate and up matrices of two formats);
// - an epilogue on the output: a bias, `y +=` (the residual add), soft-capping, or the gated
//   activation (`_swiglu_out` entries): W is gate and up interleaved in blocks of 32 rows
//   (GpuMatrix::interleaved), each workgroup computes matching gate and up rows, and y gets
//   act(gate) * up, act being SiLU (SwiGLU) or GELU (Gemma's GeGLU) as `p.gelu` says.

struct MatParams {
    rows: u32,        // rows in this part
    cols: u32,        // a multiple of 32
    row_words: u32,   // words per row in `w`
    out_row0: u32,    // this part's first row in y's rows (parts, and matrices stacked side by side)
    out_stride: u32,  // floats per token in `y`
    accumulate: u32,  // 1: y += W x (a residual add for free)
    bias: u32,        // 1: add bias[out_row0 + row]
    last_only: u32,   // 1: the input is the step's last token, the output row 0 (matrix × vector)
    eps: f32,         // the RMSNorm prologue's epsilon
    scale: f32,       // embed: the rows are multiplied by this (Gemma: sqrt(d_model))
    softcap: f32,     // > 0: y = softcap * tanh(y / softcap) (final logit soft-capping)
    gelu: u32,        // the gated activation: 0 SiLU, 1 GELU (tanh approximation)
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: MatParams;
@group(0) @binding(4) var<uniform> step: Step;
@group(0) @binding(5) var<storage, read> tokens: array<u32>;
@group(0) @binding(6) var<storage, read> norm_w: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;

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

// Scale and offset of group s of a Q4_K / Q5_K super-block at word b: x = q * scale - offset.
fn k_scale_offset(b: u32, s: u32) -> vec2<f32> {
    let dm = unpack2x16float(w[b]);
    let sm = scale_min_k4(b + 1u, s);
    return vec2<f32>(dm.x * sm.x, dm.y * sm.y);
}

// Output `row` (of the whole matrix) of token t, after the epilogue.
fn store(t: u32, row: u32, v: f32) {
    var r = v;
    if (p.bias != 0u) {
        r += bias[row];
    }
    if (p.softcap > 0.0) {
        r = p.softcap * tanh(clamp(r / p.softcap, -10.0, 10.0));
    }
    let i = t * p.out_stride + row;
    if (p.accumulate != 0u) {
        y[i] += r;
    } else {
        y[i] = r;
    }
}

// Prologues and epilogues.
const PLAIN: u32 = 0u;
const NORM: u32 = 1u;
const SWIGLU: u32 = 2u;

// The gated FFN's activation. tanh's argument is clamped: tanh(10) is 1 in f32, and some
// implementations compute tanh through exp, which overflows far out.
fn act(g: f32) -> f32 {
    if (p.gelu != 0u) {
        return 0.5 * g * (1.0 + tanh(clamp(0.7978846 * g * (1.0 + 0.044715 * g * g), -10.0, 10.0)));
    }
    return g / (1.0 + exp(-g));
}

fn act4(g: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(act(g.x), act(g.y), act(g.z), act(g.w));
}

// Inputs 8i .. 8i + 8 of token t after the prologue, but for the norm's per-token 1 / rms,
// which the callers apply to their sums.
fn input8(pro: u32, t: u32, i: u32) -> Eight {
    if (pro == SWIGLU) {
        let g = t * p.cols / 2u + 2u * i; // rows of 2 * cols: gate, then up
        let u = g + p.cols / 4u;
        return Eight(act4(x[g]) * x[u], act4(x[g + 1u]) * x[u + 1u]);
    }
    let b = t * p.cols / 4u + 2u * i;
    return Eight(x[b], x[b + 1u]);
}

// Eight weights times the norm's weights for inputs 8i .. 8i + 8.
fn times_norm_w(e: Eight, i: u32) -> Eight {
    return Eight(e.lo * norm_w[2u * i], e.hi * norm_w[2u * i + 1u]);
}

// The matrix × matrix norm prologue's partial sums of squares.
var<workgroup> norm_partial: array<f32, 64>;

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
        y[o + i] = e.lo[i] * p.scale;
        y[o + 4u + i] = e.hi[i] * p.scale;
    }
}

// Matrix × vector (decode: a step of at most 16 tokens, one sequence's or one each of n
// choices'). A workgroup of 64 computes MV_ROWS rows for `per_pass` tokens at a time (1 for a
// single token, MV_COLS for more): each invocation takes eighths of groups of 32 columns, loads
// each token's 8 inputs once and dequantizes each row's 8 weights once for all the pass's
// tokens, then the 64 partial sums of each (row, token) are added up. A token's arithmetic is
// the same in both entries and whatever the step's size, so one of n choices decoded together
// gets the logits it would get alone. With the SwiGLU epilogue the rows are half gate rows and
// half the matching up rows.
//
// MV_ROWS, MV_TREE and MV_SUBGROUP are the kernel variant's (src/gpu/kernels.rs, `Variant`),
// prepended with the `Lanes` helpers of shaders/variants/:
// - software adapters: 8 rows, and one invocation per output adds its 64 partial sums after a
//   single barrier (on lavapipe that ran 2-3x faster than 4 rows and a reduction tree, and the
//   1-token entry 2.5x faster than the 4-token one on a single token);
// - GPUs: 2 rows (4x the workgroups to keep memory busy), the partial sums added by a tree of 6
//   barriers (`workgroup`), or in each subgroup's registers, then the subgroups' sums after one
//   barrier (`subgroup`).
const MV_WG: u32 = 64u;
const MV_COLS: u32 = 4u;
const MV_OUTS: u32 = MV_ROWS * MV_COLS;
var<workgroup> mv_partial: array<f32, MV_OUTS * MV_WG>;
var<workgroup> mv_squares: array<f32, 256>;  // MV_COLS * MV_WG

// Row r of the workgroup whose first slot is r0, in W (this part's rows).
fn mv_row(epi: u32, r0: u32, r: u32) -> u32 {
    if (epi == SWIGLU) {
        let half = MV_ROWS / 2u;
        let j = r0 / 2u + r % half; // the output row; gate rows then up rows, 32 of each a block
        return (j / 32u) * 64u + (r / half) * 32u + j % 32u;
    }
    return r0 + r;
}

// Add up the partial sums of the pass's outputs (and of the norm's squares) with a tree, leaving
// each total in its slot 0. Every invocation calls it (it has barriers).
fn mv_tree(per_pass: u32, tid: u32) {
    for (var s = MV_WG / 2u; s > 0u; s >>= 1u) {
        if (tid < s) {
            for (var k = 0u; k < MV_OUTS; k++) {
                mv_partial[k * MV_WG + tid] += mv_partial[k * MV_WG + tid + s];
            }
            for (var c = 0u; c < per_pass; c++) {
                mv_squares[c * MV_WG + tid] += mv_squares[c * MV_WG + tid + s];
            }
        }
        workgroupBarrier();
    }
}

// The sum of row r's partial sums for token c of the group, from its first `terms` slots.
fn mv_sum(r: u32, c: u32, terms: u32) -> f32 {
    let k = (r * MV_COLS + c) * MV_WG;
    var sum = 0.0;
    for (var i = 0u; i < terms; i++) {
        sum += mv_partial[k + i];
    }
    return sum;
}

// 1 / rms of token c of the group, from the first `terms` slots of its sums of squares.
fn mv_inv_rms(c: u32, terms: u32) -> f32 {
    var total = 0.0;
    for (var j = 0u; j < terms; j++) {
        total += mv_squares[c * MV_WG + j];
    }
    return inverseSqrt(total / f32(p.cols) + p.eps);
}

// Leave the workgroup's partial sums (`acc`, and the norm's `squares`) where `mv_sum` and
// `mv_inv_rms` read them; returns how many slots of each hold terms. Every invocation calls it.
fn mv_reduce(acc: array<f32, MV_OUTS>, squares: array<f32, 4>, per_pass: u32, tid: u32, lanes: Lanes) -> u32 {
    if (MV_SUBGROUP) {
        let first = lanes_first(lanes);
        let slot = lanes_group(lanes);
        for (var c = 0u; c < per_pass; c++) {
            for (var r = 0u; r < MV_ROWS; r++) {
                let k = r * MV_COLS + c;
                let v = lanes_sum(acc[k]);
                if (first) {
                    mv_partial[k * MV_WG + slot] = v;
                }
            }
            let sq = lanes_sum(squares[c]);
            if (first) {
                mv_squares[c * MV_WG + slot] = sq;
            }
        }
        workgroupBarrier();
        return lanes_groups(lanes);
    }
    for (var r = 0u; r < MV_ROWS; r++) {
        for (var c = 0u; c < per_pass; c++) {
            mv_partial[(r * MV_COLS + c) * MV_WG + tid] = acc[r * MV_COLS + c];
        }
    }
    for (var c = 0u; c < per_pass; c++) {
        mv_squares[c * MV_WG + tid] = squares[c];
    }
    workgroupBarrier();
    if (MV_TREE) {
        mv_tree(per_pass, tid);
        return 1u;
    }
    return MV_WG;
}

fn matvec_body(pro: u32, epi: u32, per_pass: u32, wid: vec3<u32>, nwg: vec3<u32>, tid: u32, lanes: Lanes) {
    let r0 = flat_wg(wid, nwg) * MV_ROWS;
    if (r0 >= p.rows) {
        return;
    }
    // The step's tokens, or its last one only (into output row 0).
    let t_first = select(0u, step.n - 1u, p.last_only != 0u);
    if (per_pass == 1u) {
        // No loop around the pass: on lavapipe a barrier inside a loop costs the invocations'
        // state at every turn.
        matvec_pass(pro, epi, 1u, r0, t_first, t_first, tid, lanes);
        return;
    }
    for (var c0 = t_first; c0 < step.n; c0 += per_pass) {
        matvec_pass(pro, epi, per_pass, r0, t_first, c0, tid, lanes);
        workgroupBarrier(); // the partial sums are reused by the next pass
    }
}

// Rows r0 .. r0 + MV_ROWS for the pass's tokens c0 .. c0 + per_pass (those of the step).
fn matvec_pass(pro: u32, epi: u32, per_pass: u32, r0: u32, t_first: u32, c0: u32, tid: u32, lanes: Lanes) {
    let cols = min(per_pass, step.n - c0);
    let items = p.cols / 8u;
    var row_base: array<u32, MV_ROWS>; // where each row starts in w
    for (var r = 0u; r < MV_ROWS; r++) {
        row_base[r] = mv_row(epi, r0, r) * p.row_words;
    }
    var acc: array<f32, MV_OUTS>; // [row * MV_COLS + token]
    var squares: array<f32, 4>; // the norm's, of the inputs this invocation reads
    for (var i = tid; i < items; i += MV_WG) {
        let g = i / 4u;
        let part = i % 4u;
        var xs: array<Eight, 4>;
        for (var c = 0u; c < per_pass; c++) {
            if (c < cols) {
                var xi = input8(pro, c0 + c, i);
                if (pro == NORM) {
                    squares[c] += dot(xi.lo, xi.lo) + dot(xi.hi, xi.hi);
                    xi = times_norm_w(xi, i);
                }
                xs[c] = xi;
            }
        }
        for (var r = 0u; r < MV_ROWS; r++) {
            if (r0 + r < p.rows) {
                let e = load8(row_base[r], g, part);
                for (var c = 0u; c < per_pass; c++) {
                    if (c < cols) {
                        acc[r * MV_COLS + c] += dot(e.lo, xs[c].lo) + dot(e.hi, xs[c].hi);
                    }
                }
            }
        }
    }
    let terms = mv_reduce(acc, squares, per_pass, tid, lanes);
    // One invocation per output takes the sum and applies the norm's 1 / rms to it.
    let c = tid / MV_ROWS;
    let r = tid % MV_ROWS;
    if (c < cols) {
        var scale = 1.0;
        if (pro == NORM) {
            scale = mv_inv_rms(c, terms);
        }
        let t_out = c0 + c - t_first;
        if (epi == SWIGLU) {
            let half = MV_ROWS / 2u;
            if (r < half) {
                let gate = mv_sum(r, c, terms) * scale;
                store(t_out, p.out_row0 + r0 / 2u + r, act(gate) * mv_sum(r + half, c, terms) * scale);
            }
        } else if (r0 + r < p.rows) {
            store(t_out, p.out_row0 + r0 + r, mv_sum(r, c, terms) * scale);
        }
    }
}

@compute @workgroup_size(64)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) tid: u32, lanes: Lanes) {
    matvec_body(PLAIN, PLAIN, 1u, wid, nwg, tid, lanes);
}

@compute @workgroup_size(64)
fn matvec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) tid: u32, lanes: Lanes) {
    matvec_body(PLAIN, PLAIN, MV_COLS, wid, nwg, tid, lanes);
}

@compute @workgroup_size(64)
fn matvec_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) tid: u32, lanes: Lanes) {
    matvec_body(NORM, PLAIN, 1u, wid, nwg, tid, lanes);
}

@compute @workgroup_size(64)
fn matvec4_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) tid: u32, lanes: Lanes) {
    matvec_body(NORM, PLAIN, MV_COLS, wid, nwg, tid, lanes);
}

@compute @workgroup_size(64)
fn matvec_swiglu_in(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) tid: u32, lanes: Lanes) {
    matvec_body(SWIGLU, PLAIN, 1u, wid, nwg, tid, lanes);
}

@compute @workgroup_size(64)
fn matvec4_swiglu_in(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) tid: u32, lanes: Lanes) {
    matvec_body(SWIGLU, PLAIN, MV_COLS, wid, nwg, tid, lanes);
}

@compute @workgroup_size(64)
fn matvec_norm_swiglu_out(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) tid: u32, lanes: Lanes) {
    matvec_body(NORM, SWIGLU, 1u, wid, nwg, tid, lanes);
}

@compute @workgroup_size(64)
fn matvec4_norm_swiglu_out(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) tid: u32, lanes: Lanes) {
    matvec_body(NORM, SWIGLU, MV_COLS, wid, nwg, tid, lanes);
}

// Matrix × matrix (prefill: n tokens). Each invocation owns one row and a tile of MM_TOKENS
// tokens: per group of 32 columns it dequantizes its 32 weights once into registers (times the
// norm's weights) and uses them for every token of the tile, whose inputs are the same for all
// invocations (broadcast loads). Barriers only for the norm's 1 / rms per token and for the
// SwiGLU epilogue, where invocations 32.. (up rows) hand their sums to 0..32 (gate rows).
const MM_TOKENS: u32 = 32u;
var<workgroup> tile_scale: array<f32, 32>;  // MM_TOKENS
var<workgroup> tile_up: array<f32, 1024>;   // MM_TOKENS × 32

fn matmat_body(pro: u32, epi: u32, wid: vec3<u32>, tid: u32) {
    let row = wid.x * 64u + tid;
    let tok0 = wid.y * MM_TOKENS;
    let count = min(MM_TOKENS, step.n - tok0);
    if (pro == NORM) {
        // Two invocations per token, each summing every other vec4 of the row.
        let t = tid % MM_TOKENS;
        var s = 0.0;
        if (t < count) {
            let b = (tok0 + t) * p.cols / 4u;
            for (var v = tid / MM_TOKENS; v < p.cols / 4u; v += 2u) {
                s += dot(x[b + v], x[b + v]);
            }
        }
        norm_partial[tid] = s;
        workgroupBarrier();
        if (tid < MM_TOKENS) {
            tile_scale[tid] = inverseSqrt((norm_partial[tid] + norm_partial[tid + MM_TOKENS]) / f32(p.cols) + p.eps);
        }
        workgroupBarrier();
    }
    var acc: array<f32, 32>;
    if (row < p.rows) {
        let base = row * p.row_words;
        let groups = p.cols / 32u;
        for (var g = 0u; g < groups; g++) {
            var a = load8(base, g, 0u);
            var b = load8(base, g, 1u);
            var c = load8(base, g, 2u);
            var d = load8(base, g, 3u);
            if (pro == NORM) {
                a = times_norm_w(a, 4u * g);
                b = times_norm_w(b, 4u * g + 1u);
                c = times_norm_w(c, 4u * g + 2u);
                d = times_norm_w(d, 4u * g + 3u);
            }
            // A constant trip count lets compilers unroll and keep `acc` in registers.
            for (var t = 0u; t < MM_TOKENS; t++) {
                if (t < count) {
                    let xa = input8(pro, tok0 + t, 4u * g);
                    let xb = input8(pro, tok0 + t, 4u * g + 1u);
                    let xc = input8(pro, tok0 + t, 4u * g + 2u);
                    let xd = input8(pro, tok0 + t, 4u * g + 3u);
                    acc[t] += dot(a.lo, xa.lo) + dot(a.hi, xa.hi) + dot(b.lo, xb.lo) + dot(b.hi, xb.hi)
                        + dot(c.lo, xc.lo) + dot(c.hi, xc.hi) + dot(d.lo, xd.lo) + dot(d.hi, xd.hi);
                }
            }
        }
        if (pro == NORM) {
            for (var t = 0u; t < MM_TOKENS; t++) {
                acc[t] *= tile_scale[t];
            }
        }
    }
    if (epi == SWIGLU) {
        // Rows are whole blocks of 32 gate and 32 up rows here, so every invocation has a row.
        if (tid >= 32u) {
            for (var t = 0u; t < MM_TOKENS; t++) {
                tile_up[t * 32u + tid - 32u] = acc[t];
            }
        }
        workgroupBarrier();
        if (tid < 32u) {
            for (var t = 0u; t < MM_TOKENS; t++) {
                if (t < count) {
                    let gate = acc[t];
                    store(tok0 + t, p.out_row0 + wid.x * 32u + tid, act(gate) * tile_up[t * 32u + tid]);
                }
            }
        }
        return;
    }
    if (row < p.rows) {
        for (var t = 0u; t < MM_TOKENS; t++) {
            if (t < count) {
                store(tok0 + t, p.out_row0 + row, acc[t]);
            }
        }
    }
}

@compute @workgroup_size(64)
fn matmat(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    matmat_body(PLAIN, PLAIN, wid, tid);
}

@compute @workgroup_size(64)
fn matmat_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    matmat_body(NORM, PLAIN, wid, tid);
}

@compute @workgroup_size(64)
fn matmat_swiglu_in(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    matmat_body(SWIGLU, PLAIN, wid, tid);
}

@compute @workgroup_size(64)
fn matmat_norm_swiglu_out(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    matmat_body(NORM, SWIGLU, wid, tid);
}
