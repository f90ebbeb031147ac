// Q5_K, 44 words per 256 weights: [d, dmin: f16][scales: 12 bytes][qh: 32 bytes][qs: 128 bytes].
// Like Q4_K, plus a fifth bit: for element l of group s it is bit s of qh[l].
fn load8(row: u32, g: u32, part: u32) -> Eight {
    let b = row + (g / 8u) * 44u;
    let s = g % 8u;
    let so = k_scale_offset(b, s);
    let scale = so.x;
    let offset = so.y;
    let h = b + 4u + part * 2u;
    let i = b + 12u + (s / 2u) * 8u + part * 2u;
    let shift = (s % 2u) * 4u;
    let lo = nib4(w[i], shift) + bit_of_bytes4(w[h], s) * 16.0;
    let hi = nib4(w[i + 1u], shift) + bit_of_bytes4(w[h + 1u], s) * 16.0;
    return Eight(lo * scale - offset, hi * scale - offset);
}
