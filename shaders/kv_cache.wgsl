// Append a step's keys and values to one layer's cache at positions start .. start + n, in the
// cache's element type (f16 when the device has shader-f16).

struct KvParams {
    kv_dim: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> k: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<kv_t>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<kv_t>;
@group(0) @binding(4) var<uniform> p: KvParams;
@group(0) @binding(5) var<uniform> step: Step;

@compute @workgroup_size(64)
fn kv_write(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) tid: u32) {
    let idx = flat_wg(wid, nwg) * 64u + tid;
    if (idx >= step.n * p.kv_dim) {
        return;
    }
    let at = step.start * p.kv_dim + idx;
    k_cache[at] = kv_t(k[idx]);
    v_cache[at] = kv_t(v[idx]);
}
