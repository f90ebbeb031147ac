// The kernel variants without subgroups (src/gpu/kernels.rs): the same helpers as
// variants/subgroup.wgsl, never called (MV_SUBGROUP is false), so that matmul.wgsl compiles
// on every device. `Lanes` holds a builtin the kernels do not otherwise read.

struct Lanes {
    @builtin(local_invocation_id) unused: vec3<u32>,
}

fn lanes_sum(v: f32) -> f32 {
    return v;
}

fn lanes_first(l: Lanes) -> bool {
    return true;
}

fn lanes_group(l: Lanes) -> u32 {
    return 0u;
}

fn lanes_groups(l: Lanes) -> u32 {
    return 1u;
}
