// Q8_0, padded to 9 words: [d: f16, pad][qs: 32 signed bytes]; x = q * d.
fn load8(row: u32, g: u32, part: u32) -> Eight {
    let b = row + g * 9u;
    let d = unpack2x16float(w[b]).x;
    let i = b + 1u + 2u * part;
    return Eight(i8x4(w[i]) * d, i8x4(w[i + 1u]) * d);
}
