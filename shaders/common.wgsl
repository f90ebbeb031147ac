// Prepended to every kernel. `kv_t` (the KV-cache element type) and `enable f16;` are set by
// src/gpu/kernels.rs from the device's features.

// Per step: how many tokens this step runs.
struct Step {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Where a token of the step sits in the KV cache (`Place` in src/backend.rs): its K/V go to
// `slot`, it is rotated as position `pos`, and it attends to slots 0 .. prefix, then to its own
// run own ..= slot (positions pos - (slot - own) ..= pos).
struct Place {
    slot: u32,
    pos: u32,
    prefix: u32, // `shared` (a reserved word in WGSL)
    own: u32,
}

// Eight consecutive weights, dequantized.
struct Eight {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// Workgroup index over a 2D grid: dispatches wider than 65535 workgroups wrap into y.
fn flat_wg(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The four bytes of a word as unsigned values.
fn u8x4(w: u32) -> vec4<f32> {
    return vec4<f32>(f32(w & 255u), f32((w >> 8u) & 255u), f32((w >> 16u) & 255u), f32(w >> 24u));
}

// The four bytes of a word as signed values.
fn i8x4(w: u32) -> vec4<f32> {
    let v = bitcast<i32>(w);
    return vec4<f32>(f32((v << 24u) >> 24u), f32((v << 16u) >> 24u), f32((v << 8u) >> 24u), f32(v >> 24u));
}

// One nibble of each of the four bytes of a word: the low ones (shift 0) or the high ones (4).
fn nib4(w: u32, shift: u32) -> vec4<f32> {
    let v = w >> shift;
    return vec4<f32>(f32(v & 15u), f32((v >> 8u) & 15u), f32((v >> 16u) & 15u), f32((v >> 24u) & 15u));
}

// Two bits (at `shift`) of each of the four bytes of a word.
fn crumb4(w: u32, shift: u32) -> vec4<f32> {
    let v = w >> shift;
    return vec4<f32>(f32(v & 3u), f32((v >> 8u) & 3u), f32((v >> 16u) & 3u), f32((v >> 24u) & 3u));
}

// Bit `shift` of each of the four bytes of a word.
fn bit_of_bytes4(w: u32, shift: u32) -> vec4<f32> {
    let v = w >> shift;
    return vec4<f32>(f32(v & 1u), f32((v >> 8u) & 1u), f32((v >> 16u) & 1u), f32((v >> 24u) & 1u));
}

// One bit of each of four values of a 32-bit mask, from bit `first` on, as 0 or 16.
fn bit4(mask: u32, first: u32) -> vec4<f32> {
    let v = mask >> first;
    return vec4<f32>(f32(v & 1u), f32((v >> 1u) & 1u), f32((v >> 2u) & 1u), f32((v >> 3u) & 1u)) * 16.0;
}
