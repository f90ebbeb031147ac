// F32 weights: 32 words per group of 32.
fn load8(row: u32, g: u32, part: u32) -> Eight {
    let i = row + g * 32u + part * 8u;
    let lo = vec4<f32>(bitcast<f32>(w[i]), bitcast<f32>(w[i + 1u]), bitcast<f32>(w[i + 2u]), bitcast<f32>(w[i + 3u]));
    let hi = vec4<f32>(bitcast<f32>(w[i + 4u]), bitcast<f32>(w[i + 5u]), bitcast<f32>(w[i + 6u]), bitcast<f32>(w[i + 7u]));
    return Eight(lo, hi);
}
