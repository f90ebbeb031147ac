// Q4_0, padded to 5 words: [d: f16, pad][qs: 16 bytes]. Element j < 16 is the low nibble of
// qs[j], element j >= 16 the high nibble of qs[j - 16]; x = (q - 8) * d.
fn load8(row: u32, g: u32, part: u32) -> Eight {
    let b = row + g * 5u;
    let d = unpack2x16float(w[b]).x;
    let i = b + 1u + 2u * (part & 1u);
    let shift = (part >> 1u) * 4u;
    return Eight((nib4(w[i], shift) - 8.0) * d, (nib4(w[i + 1u], shift) - 8.0) * d);
}
