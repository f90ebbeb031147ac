// Q5_1, 6 words: [d: f16, m: f16][qh: u32][qs: 16 bytes]; bits as in Q5_0; x = q * d + m.
fn load8(row: u32, g: u32, part: u32) -> Eight {
    let b = row + g * 6u;
    let dm = unpack2x16float(w[b]);
    let qh = w[b + 1u];
    let i = b + 2u + 2u * (part & 1u);
    let shift = (part >> 1u) * 4u;
    let e = part * 8u;
    let lo = nib4(w[i], shift) + bit4(qh, e);
    let hi = nib4(w[i + 1u], shift) + bit4(qh, e + 4u);
    return Eight(lo * dm.x + dm.y, hi * dm.x + dm.y);
}
