// F16 weights: two per word, 16 words per group of 32.
fn load8(row: u32, g: u32, part: u32) -> Eight {
    let i = row + g * 16u + part * 4u;
    let a = unpack2x16float(w[i]);
    let b = unpack2x16float(w[i + 1u]);
    let c = unpack2x16float(w[i + 2u]);
    let d = unpack2x16float(w[i + 3u]);
    return Eight(vec4<f32>(a, b), vec4<f32>(c, d));
}
