// Q4_1, 5 words: [d: f16, m: f16][qs: 16 bytes]; nibbles as in Q4_0; x = q * d + m.
fn load8(row: u32, g: u32, part: u32) -> Eight {
    let b = row + g * 5u;
    let dm = unpack2x16float(w[b]);
    let i = b + 1u + 2u * (part & 1u);
    let shift = (part >> 1u) * 4u;
    return Eight(nib4(w[i], shift) * dm.x + dm.y, nib4(w[i + 1u], shift) * dm.x + dm.y);
}
