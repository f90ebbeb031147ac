// The adapter's read-write bandwidth, for `bench --kernels`: every invocation copies one
// vec4<u32> (16 bytes), 256 invocations to a workgroup; the ceiling a memory-bound kernel
// (decode's matrix × vector) is measured against.

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_wg(wid, nwg) * 256u + lid;
    if (i < arrayLength(&src)) {
        dst[i] = src[i];
    }
}
