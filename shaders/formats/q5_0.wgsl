// Q5_0, padded to 6 words: [d: f16, pad][qh: u32][qs: 16 bytes]. Low 4 bits as in Q4_0, the
// fifth bit of element j is bit j of qh; x = (q - 16) * d.
fn load8(row: u32, g: u32, part: u32) -> Eight {
    let b = row + g * 6u;
    let d = unpack2x16float(w[b]).x;
    let qh = w[b + 1u];
    let i = b + 2u + 2u * (part & 1u);
    let shift = (part >> 1u) * 4u;
    let e = part * 8u;
    let lo = nib4(w[i], shift) + bit4(qh, e) - 16.0;
    let hi = nib4(w[i + 1u], shift) + bit4(qh, e + 4u) - 16.0;
    return Eight(lo * d, hi * d);
}
