//! The WGSL kernels of `shaders/`, compiled into pipelines. Each file is one family sharing one
//! bind-group layout; the matmul family is compiled once per weight format, with that format's
//! `load8` pasted in. Every kernel gets `shaders/common.wgsl` and the KV element type first.

use std::collections::HashMap;

use super::device::Gpu;
use crate::error::Result;
use crate::quant::DType;

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
const ROPE_KV: &str = include_str!("../../shaders/rope_kv.wgsl");
const ATTENTION: &str = include_str!("../../shaders/attention.wgsl");
const TOPK: &str = include_str!("../../shaders/topk.wgsl");
const NORM: &str = include_str!("../../shaders/norm.wgsl");

/// The `load8` of a weight format.
fn format_source(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => include_str!("../../shaders/formats/f32.wgsl"),
        DType::F16 => include_str!("../../shaders/formats/f16.wgsl"),
        DType::BF16 => include_str!("../../shaders/formats/bf16.wgsl"),
        DType::Q4_0 => include_str!("../../shaders/formats/q4_0.wgsl"),
        DType::Q4_1 => include_str!("../../shaders/formats/q4_1.wgsl"),
        DType::Q5_0 => include_str!("../../shaders/formats/q5_0.wgsl"),
        DType::Q5_1 => include_str!("../../shaders/formats/q5_1.wgsl"),
        DType::Q8_0 => include_str!("../../shaders/formats/q8_0.wgsl"),
        DType::Q4_K => include_str!("../../shaders/formats/q4_k.wgsl"),
        DType::Q5_K => include_str!("../../shaders/formats/q5_k.wgsl"),
        DType::Q6_K => include_str!("../../shaders/formats/q6_k.wgsl"),
    }
}

/// A set of kernel shapes for a class of device, chosen per adapter ([`Variant::for_adapter`])
/// or by name (`GpuOptions::kernels`, `--kernels NAME`, `WEBGPU_LLM_KERNELS`). They differ in
/// the matrix × vector kernel of decoding (`shaders/matmul.wgsl`), the kernel a token's time
/// goes to; every variant computes each token's logits independently of the step's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// For software adapters (lavapipe, SwiftShader), where barriers are what costs: 8 rows a
    /// workgroup, the 64 partial sums of each output added by one invocation after one barrier.
    Software,
    /// For GPUs without subgroups (the browser: wgpu 30's WebGPU backend cannot ask for
    /// them): 2 rows a workgroup (4× the workgroups: enough in flight to cover memory latency
    /// on a 4096-row matrix), the partial sums added by a tree in workgroup memory (6 barriers,
    /// each output's critical path 6 adds instead of 64 dependent reads).
    Workgroup,
    /// For GPUs with subgroups (wgpu's `SUBGROUP`, natively): 2 rows a workgroup, each
    /// subgroup's partial sums added in registers (`subgroupAdd`), then the 64 / subgroup-size
    /// subgroup sums after one barrier.
    Subgroup,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Software, Variant::Workgroup, Variant::Subgroup];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Software => "software",
            Variant::Workgroup => "workgroup",
            Variant::Subgroup => "subgroup",
        }
    }

    /// The variant named `name`: `invalid_argument` listing them otherwise.
    pub fn parse(name: &str) -> Result<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
            crate::Error::InvalidArgument(format!("kernels {name:?}: want one of {}", names.join(", ")))
        })
    }

    /// The shapes for an adapter: a software rasterizer's own, else the GPU's, through
    /// subgroups where the device offers them.
    pub fn for_adapter(software: bool, subgroups: bool) -> Variant {
        match (software, subgroups) {
            (true, _) => Variant::Software,
            (false, true) => Variant::Subgroup,
            (false, false) => Variant::Workgroup,
        }
    }

    /// Rows a matrix × vector workgroup computes.
    pub fn mv_rows(self) -> u32 {
        match self {
            Variant::Software => 8,
            Variant::Workgroup | Variant::Subgroup => 2,
        }
    }

    /// The device feature the variant needs.
    pub fn features(self) -> wgpu::Features {
        match self {
            Variant::Subgroup => wgpu::Features::SUBGROUP,
            Variant::Software | Variant::Workgroup => wgpu::Features::empty(),
        }
    }

    /// What `shaders/matmul.wgsl` is compiled with: the variant's constants and `Lanes`.
    fn matmul_prelude(self) -> String {
        let lanes = match self {
            Variant::Subgroup => include_str!("../../shaders/variants/subgroup.wgsl"),
            Variant::Software | Variant::Workgroup => include_str!("../../shaders/variants/no_subgroup.wgsl"),
        };
        format!(
            "const MV_ROWS: u32 = {}u;\nconst MV_TREE: bool = {};\nconst MV_SUBGROUP: bool = {};\n{lanes}\n",
            self.mv_rows(),
            self == Variant::Workgroup,
            self == Variant::Subgroup
        )
    }
}

/// How a kernel sees one binding.
#[derive(Clone, Copy)]
pub(super) enum Slot {
    Read,
    Write,
    Uniform,
}

/// One shader file's pipelines and their shared bind-group layout.
pub struct Family {
    pub layout: wgpu::BindGroupLayout,
    pipelines: HashMap<&'static str, wgpu::ComputePipeline>,
}

impl Family {
    pub(super) fn new(gpu: &Gpu, label: &str, source: &str, slots: &[Slot], entries: &[&'static str]) -> Family {
        let layout_entries: Vec<wgpu::BindGroupLayoutEntry> = slots
            .iter()
            .enumerate()
            .map(|(i, slot)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match slot {
                    Slot::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Slot::Read | Slot::Write => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: matches!(slot, Slot::Read) },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = gpu.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(label),
            entries: &layout_entries,
        });
        let pipeline_layout = gpu.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let kv = if gpu.f16 { "enable f16;\nalias kv_t = f16;\n" } else { "alias kv_t = f32;\n" };
        let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(format!("{kv}{COMMON}\n{source}").into()),
        });
        let pipelines = entries
            .iter()
            .map(|&entry| {
                let p = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                });
                (entry, p)
            })
            .collect();
        Family { layout, pipelines }
    }

    pub fn pipeline(&self, entry: &str) -> &wgpu::ComputePipeline {
        &self.pipelines[entry]
    }

    /// A bind group of whole buffers or ranges, in binding order.
    pub fn bind(&self, gpu: &Gpu, resources: &[wgpu::BindingResource]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry { binding: i as u32, resource: r.clone() })
            .collect();
        gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.layout,
            entries: &entries,
        })
    }
}

/// Every kernel, compiled for one device.
pub struct Kernels {
    /// The shapes they were compiled with.
    pub variant: Variant,
    /// Per weight format: `embed`, and `matvec` / `matvec4` / `matmat` with each prologue (see
    /// [`MATMUL_ENTRIES`]).
    pub matmul: HashMap<DType, Family>,
    pub rope_kv: Family,
    pub attention: Family,
    /// `head_norm`, `add_norm`.
    pub norm: Family,
    /// `topk`, `logsumexp`, `gather`.
    pub topk: Family,
}

impl Kernels {
    /// Compile every family, and the matmul family for each of `formats`.
    pub async fn new(gpu: &Gpu, formats: &[DType]) -> Result<Kernels> {
        use Slot::*;
        gpu.scoped("the kernels", || {
            let mut matmul = HashMap::new();
            for &dtype in formats {
                if matmul.contains_key(&dtype) {
                    continue;
                }
                let source = format!("{}{MATMUL}\n{}", gpu.kernels.matmul_prelude(), format_source(dtype));
                let family = Family::new(
                    gpu,
                    &format!("matmul {}", dtype.name()),
                    &source,
                    &[Read, Read, Write, Uniform, Uniform, Read, Read, Read],
                    &MATMUL_ENTRIES,
                );
                matmul.insert(dtype, family);
            }
            Kernels {
                variant: gpu.kernels,
                matmul,
                rope_kv: Family::new(
                    gpu,
                    "rope_kv",
                    ROPE_KV,
                    &[Read, Read, Write, Write, Write, Uniform, Uniform, Read],
                    &["rope_kv"],
                ),
                attention: Family::new(
                    gpu,
                    "attention",
                    ATTENTION,
                    &[Read, Read, Read, Write, Uniform, Uniform, Read],
                    &["attention"],
                ),
                norm: Family::new(
                    gpu,
                    "norm",
                    NORM,
                    &[Read, Read, Read, Write, Uniform, Uniform],
                    &["head_norm", "add_norm"],
                ),
                topk: Family::new(
                    gpu,
                    "topk",
                    TOPK,
                    &[Read, Read, Write, Uniform, Read],
                    &["topk", "logsumexp", "gather"],
                ),
            }
        })
        .await
    }
}

/// The matmul entry points: the embedding lookup, then matrix × vector (one token a pass, and
/// four) and matrix × matrix, plain, with the RMSNorm prologue, with the SwiGLU prologue, and
/// with the RMSNorm prologue and the SwiGLU epilogue.
pub const MATMUL_ENTRIES: [&str; 13] = [
    "embed",
    "matvec",
    "matvec_norm",
    "matvec_swiglu_in",
    "matvec_norm_swiglu_out",
    "matvec4",
    "matvec4_norm",
    "matvec4_swiglu_in",
    "matvec4_norm_swiglu_out",
    "matmat",
    "matmat_norm",
    "matmat_swiglu_in",
    "matmat_norm_swiglu_out",
];

/// A count of workgroups as a 2-D grid: WebGPU allows at most 65535 per dimension, so larger
/// counts wrap into y (the kernels rebuild the flat index with `flat_wg`).
pub fn grid(workgroups: u32) -> (u32, u32) {
    let x = workgroups.clamp(1, 65535);
    (x, workgroups.div_ceil(x))
}

// The uniform structs of the kernels, field for field as in the WGSL files.

/// `Step` (common.wgsl): written before every step.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    pub n: u32,
    pub _pad: [u32; 3],
}

/// `Place` (common.wgsl): one per token of a step, written before every step.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PlaceParams {
    pub slot: u32,
    pub pos: u32,
    pub shared: u32,
    pub own: u32,
}

impl From<crate::backend::Place> for PlaceParams {
    fn from(p: crate::backend::Place) -> PlaceParams {
        PlaceParams { slot: p.slot as u32, pos: p.pos() as u32, shared: p.shared as u32, own: p.own as u32 }
    }
}

/// `MatParams` (matmul.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatParams {
    pub rows: u32,
    pub cols: u32,
    pub row_words: u32,
    pub out_row0: u32,
    pub out_stride: u32,
    pub accumulate: u32,
    pub bias: u32,
    pub last_only: u32,
    pub eps: f32,
    pub scale: f32,
    pub softcap: f32,
    pub gelu: u32,
}

/// `RopeParams` (rope_kv.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RopeParams {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub rope_dim: u32,
    pub neox: u32,
    pub _pad: [u32; 3],
}

/// `AttnParams` (attention.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttnParams {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub scale: f32,
    pub window: u32,
    pub _pad: [u32; 3],
}

/// `NormParams` (norm.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NormParams {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub dim: u32,
    pub eps: f32,
}

/// `TopkParams` (topk.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TopkParams {
    pub count: u32,
    pub keep: u32,
    pub out_offset: u32,
    pub from_logits: u32,
}

/// The largest head the attention kernel holds in workgroup memory.
pub const MAX_HEAD_DIM: usize = 256;
