// BF16 weights: two per word (the top 16 bits of an f32), 16 words per group of 32.
fn bf16x2(v: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u));
}

fn load8(row: u32, g: u32, part: u32) -> Eight {
    let i = row + g * 16u + part * 4u;
    return Eight(vec4<f32>(bf16x2(w[i]), bf16x2(w[i + 1u])), vec4<f32>(bf16x2(w[i + 2u]), bf16x2(w[i + 3u])));
}
