// Decode's matrix × vector through subgroups (the `subgroup` kernel variant, src/gpu/kernels.rs;
// natively, on adapters with wgpu's SUBGROUP feature): each subgroup adds its invocations'
// partial sums in registers, and its first invocation leaves them in the slot of its subgroup.

struct Lanes {
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_id) group: u32,
    @builtin(num_subgroups) groups: u32,
}

fn lanes_sum(v: f32) -> f32 {
    return subgroupAdd(v);
}

fn lanes_first(l: Lanes) -> bool {
    return l.lane == 0u;
}

fn lanes_group(l: Lanes) -> u32 {
    return l.group;
}

fn lanes_groups(l: Lanes) -> u32 {
    return l.groups;
}
