// Q4_K, 36 words per 256 weights: [d: f16, dmin: f16][scales: 12 bytes][qs: 128 bytes].
// Group s (0..8) of 32 has a 6-bit scale and min (ggml's get_scale_min_k4) and takes the low
// (s even) or high (s odd) nibbles of qs[32 (s / 2) ..][..32]; x = d * sc * q - dmin * m.
fn load8(row: u32, g: u32, part: u32) -> Eight {
    let b = row + (g / 8u) * 36u;
    let s = g % 8u;
    let so = k_scale_offset(b, s);
    let scale = so.x;
    let offset = so.y;
    let i = b + 4u + (s / 2u) * 8u + part * 2u;
    let shift = (s % 2u) * 4u;
    return Eight(nib4(w[i], shift) * scale - offset, nib4(w[i + 1u], shift) * scale - offset);
}
