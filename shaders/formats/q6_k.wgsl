// Q6_K, padded to 53 words per 256 weights: [ql: 128 bytes][qh: 64 bytes][scales: 16 i8][d: f16, pad].
// Group s (0..8) lies in half n = s / 4 as its quarter k = s % 4: element l takes its low 4 bits
// from ql[64n + 32 (k % 2) + l] (high nibble when k >= 2) and its top 2 bits from bits 2k of
// qh[32n + l]; 16 elements share the scale sc[8n + l / 16 + 2k]; x = d * sc * (q - 32).
fn load8(row: u32, g: u32, part: u32) -> Eight {
    let b = row + (g / 8u) * 53u;
    let s = g % 8u;
    let n = s / 4u;
    let k = s % 4u;
    let l = part * 8u;
    let d = unpack2x16float(w[b + 52u]).x;
    let sc_byte = byte_at(b + 48u, 8u * n + l / 16u + 2u * k);
    let sc = f32((bitcast<i32>(sc_byte) << 24u) >> 24u);
    let ql = b + (64u * n + 32u * (k % 2u) + l) / 4u;
    let qh = b + 32u + (32u * n + l) / 4u;
    let shift = (k / 2u) * 4u;
    let lo = nib4(w[ql], shift) + crumb4(w[qh], 2u * k) * 16.0 - 32.0;
    let hi = nib4(w[ql + 1u], shift) + crumb4(w[qh + 1u], 2u * k) * 16.0 - 32.0;
    return Eight(lo * (d * sc), hi * (d * sc));
}
