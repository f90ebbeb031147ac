//! GGUF (versions 2 and 3) reader: header, metadata, tensor table, and zero-copy views of the
//! tensor data.
//!
//! The file is untrusted input. Every count, length, offset and dimension is checked against the
//! bytes that are actually there before anything is allocated, so a truncated or hostile file gives
//! `Error::BadModel` (or `UnsupportedModel` for a well-formed file we cannot run), never a panic or
//! a huge allocation.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::quant::DType;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal; a deeper nesting than this is hostile (and would recurse).
const MAX_ARRAY_DEPTH: u32 = 4;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any integer type, if it is non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type, as a signed number.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Any number, as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the contiguous one (a matrix row's length).
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A GGUF file's header: metadata and tensor table, owned, without the tensor data. It can be
/// parsed from the first bytes of a file whose size is known ([`Header::parse_prefix`]), which is
/// how a streamed model is checked and planned before its weights arrive.
#[derive(Clone, Debug)]
pub struct Header {
    pub version: u32,
    pub alignment: u64,
    pub metadata: BTreeMap<String, Value>,
    /// Offsets are absolute within the file.
    pub tensors: Vec<TensorInfo>,
    /// Where the tensor data starts (the header's length, aligned).
    pub data_start: u64,
    /// The whole file's size.
    pub file_size: u64,
}

/// What the first bytes of a file gave.
#[derive(Debug)]
pub enum Prefix {
    Header(Header),
    /// The header runs past the bytes given: at least this many are needed.
    NeedBytes(u64),
}

/// A parsed GGUF file borrowing its bytes.
#[derive(Debug)]
pub struct Gguf<'a> {
    pub header: Header,
    bytes: &'a [u8],
}

impl std::ops::Deref for Gguf<'_> {
    type Target = Header;
    fn deref(&self) -> &Header {
        &self.header
    }
}

/// A tensor's description with its raw bytes, borrowed from the file.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
}

impl<'a> Gguf<'a> {
    /// Parse the header, metadata and tensor table, and check every tensor lies inside the file.
    pub fn parse(bytes: &'a [u8]) -> Result<Gguf<'a>> {
        let header = Header::parse(bytes, bytes.len() as u64)?;
        Ok(Gguf { header, bytes })
    }

    /// The tensor with its bytes, or `None` when the file has no tensor of that name.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let info = self.tensor_info(name)?;
        // Bounds were checked in parse().
        let data = &self.bytes[info.offset as usize..(info.offset + info.size) as usize];
        Some(TensorView { info, data })
    }
}

impl Header {
    /// Parse a header from `prefix`, the first bytes of a file of `file_size` bytes; when the
    /// header is longer than the prefix, say how many bytes it needs (at least).
    pub fn parse_prefix(prefix: &[u8], file_size: u64) -> Result<Prefix> {
        if (prefix.len() as u64) > file_size {
            return Err(bad("the prefix is longer than the file"));
        }
        match Header::parse(prefix, file_size) {
            Ok(h) => Ok(Prefix::Header(h)),
            Err(Error::BadModel(m)) if m.starts_with(NEED_MORE) => {
                let need: u64 = m[NEED_MORE.len()..].parse().unwrap_or(file_size);
                // Ask for twice as much: strings and arrays come in many small reads.
                Ok(Prefix::NeedBytes(need.max(2 * prefix.len() as u64).min(file_size)))
            }
            Err(e) => Err(e),
        }
    }

    /// Parse from `bytes`, the start of a file of `file_size` bytes (all of it, or a prefix:
    /// running past a prefix is a [`NEED_MORE`] error, past the file a truncation).
    fn parse(bytes: &[u8], file_size: u64) -> Result<Header> {
        let mut r = Reader { bytes, pos: 0, file_size };
        let magic = r.take(4, "magic")?;
        if magic != MAGIC {
            return Err(bad("not a GGUF file (wrong magic bytes)"));
        }
        let version = r.u32()?;
        match version {
            2 | 3 => {}
            1 => return Err(Error::UnsupportedModel("GGUF version 1 is not supported".into())),
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(Error::UnsupportedModel("big-endian GGUF files are not supported".into()))
            }
            v => return Err(Error::UnsupportedModel(format!("GGUF version {v} is not supported"))),
        }
        let tensor_count = r.u64()?;
        let kv_count = r.u64()?;
        // A key/value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor entry at
        // least 8 + 4 + 4 + 8. Counts beyond what the file can hold are rejected up front.
        r.check_count(kv_count, 13, "metadata entries")?;
        r.check_count(tensor_count, 24, "tensor entries")?;

        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string("metadata key")?;
            let ty = r.u32()?;
            let value = r.value(ty, 0, &key)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(bad(format!("metadata key {key:?} appears twice")));
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => return Err(bad(format!("general.alignment {v:?} is not a power of two"))),
            },
        };

        let mut raw = Vec::new();
        for _ in 0..tensor_count {
            let name = r.string("tensor name")?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(bad(format!("tensor {name:?} has {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64()?);
            }
            let ty = r.u32()?;
            let offset = r.u64()?;
            raw.push((name, dims, ty, offset));
        }

        let data_start = align_up(r.pos as u64, alignment)
            .filter(|&s| s <= file_size)
            .ok_or_else(|| bad("file ends before the tensor data"))?;
        let data_len = file_size - data_start;

        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ty, offset) in raw {
            if dims.contains(&0) {
                return Err(bad(format!("tensor {name:?} has a zero dimension {dims:?}")));
            }
            let elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| bad(format!("tensor {name:?}: dimensions {dims:?} overflow")))?;
            let dtype = DType::from_ggml_type(ty).map_err(|e| match e {
                Error::UnsupportedModel(m) => Error::UnsupportedModel(format!("tensor {name:?}: {m}")),
                other => other,
            })?;
            if dims[0] % dtype.block_elems() as u64 != 0 {
                return Err(bad(format!(
                    "tensor {name:?}: row length {} is not a multiple of the {} block size {}",
                    dims[0],
                    dtype.name(),
                    dtype.block_elems()
                )));
            }
            let size = dtype.bytes_for(elements)?;
            if offset % alignment != 0 {
                return Err(bad(format!("tensor {name:?}: offset {offset} is not aligned")));
            }
            match offset.checked_add(size) {
                Some(end) if end <= data_len => {}
                _ => {
                    return Err(bad(format!(
                        "tensor {name:?}: data ({size} bytes at {offset}) runs past the end of the file"
                    )))
                }
            }
            tensors.push(TensorInfo { name, dims, dtype, offset: data_start + offset, size });
        }

        // Tensors must not overlap, and names must be unique.
        let mut order: Vec<&TensorInfo> = tensors.iter().collect();
        order.sort_by_key(|t| t.offset);
        for pair in order.windows(2) {
            if pair[0].offset + pair[0].size > pair[1].offset {
                return Err(bad(format!("tensors {:?} and {:?} overlap", pair[0].name, pair[1].name)));
            }
        }
        let mut names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("tensor {:?} appears twice", w[0])));
        }

        Ok(Header { version, alignment, metadata, tensors, data_start, file_size })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A required string value.
    pub fn str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| wrong_type(key, "a string", v))
    }

    /// An optional non-negative integer value.
    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| wrong_type(key, "a non-negative integer", v)),
        }
    }

    /// A required non-negative integer value.
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.u64_opt(key)?.ok_or_else(|| missing(key))
    }

    /// An optional numeric value.
    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| wrong_type(key, "a number", v)),
        }
    }

    /// An optional array value.
    pub fn array_opt(&self, key: &str) -> Result<Option<&[Value]>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_array().map(Some).ok_or_else(|| wrong_type(key, "an array", v)),
        }
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| missing(key))
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Total bytes of tensor data.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.size).sum()
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadModel(msg.into())
}

fn missing(key: &str) -> Error {
    bad(format!("metadata key {key:?} is missing"))
}

fn wrong_type(key: &str, want: &str, got: &Value) -> Error {
    bad(format!("metadata key {key:?} should be {want}, found a {}", got.type_name()))
}

fn align_up(pos: u64, alignment: u64) -> Option<u64> {
    pos.checked_add(alignment - 1).map(|p| p / alignment * alignment)
}

/// How a parse over a prefix says it ran out of bytes (followed by the bytes it needs).
const NEED_MORE: &str = "header needs more bytes: ";

/// A bounds-checked little-endian cursor over the first bytes of a file of `file_size` bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    file_size: u64,
}

impl<'a> Reader<'a> {
    /// Bytes left in the file (not only in the prefix).
    fn remaining(&self) -> u64 {
        self.file_size - self.pos as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(bad(format!(
                "file truncated: {what} needs {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            )));
        }
        if n > (self.bytes.len() - self.pos) as u64 {
            return Err(bad(format!("{NEED_MORE}{}", self.pos as u64 + n)));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N as u64, "a number")?.try_into().expect("length checked"))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reject a count whose elements (each at least `min_size` bytes) cannot fit in what is left.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<()> {
        if count.saturating_mul(min_size) > self.remaining() {
            return Err(bad(format!("{count} {what} cannot fit in the {} bytes left of the file", self.remaining())));
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64()?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| bad(format!("{what} is not valid UTF-8")))
    }

    fn value(&mut self, ty: u32, depth: u32, key: &str) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.array()?)),
            1 => Value::I8(i8::from_le_bytes(self.array()?)),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(bad(format!("metadata {key:?}: boolean byte {b}"))),
            },
            8 => Value::String(self.string(&format!("metadata {key:?}"))?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(bad(format!("metadata {key:?}: arrays nested too deeply")));
                }
                let elem_ty = self.u32()?;
                let count = self.u64()?;
                let min_size = match elem_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10 | 11 | 12 => 8,
                    9 => 12,
                    t => return Err(bad(format!("metadata {key:?}: unknown value type {t}"))),
                };
                self.check_count(count, min_size, &format!("elements of metadata {key:?}"))?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem_ty, depth + 1, key)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            t => return Err(bad(format!("metadata {key:?}: unknown value type {t}"))),
        })
    }
}

/// Writes GGUF files: used by tests to build small and hostile models.
pub mod writer {
    use super::Value;

    /// A GGUF v3 file built in memory.
    pub struct GgufWriter {
        pub alignment: u64,
        pub metadata: Vec<(String, Value)>,
        /// (name, dims in ggml order, ggml type id, raw data)
        pub tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    }

    impl Default for GgufWriter {
        fn default() -> Self {
            GgufWriter { alignment: 32, metadata: Vec::new(), tensors: Vec::new() }
        }
    }

    impl GgufWriter {
        pub fn kv(&mut self, key: &str, value: Value) -> &mut Self {
            self.metadata.push((key.to_string(), value));
            self
        }

        pub fn tensor(&mut self, name: &str, dims: &[u64], ggml_type: u32, data: Vec<u8>) -> &mut Self {
            self.tensors.push((name.to_string(), dims.to_vec(), ggml_type, data));
            self
        }

        pub fn to_bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(b"GGUF");
            out.extend_from_slice(&3u32.to_le_bytes());
            out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
            out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
            for (k, v) in &self.metadata {
                put_str(&mut out, k);
                out.extend_from_slice(&type_id(v).to_le_bytes());
                put_value(&mut out, v);
            }
            let mut offset = 0u64;
            let mut offsets = Vec::new();
            for (name, dims, ty, data) in &self.tensors {
                put_str(&mut out, name);
                out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
                for d in dims {
                    out.extend_from_slice(&d.to_le_bytes());
                }
                out.extend_from_slice(&ty.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
                offsets.push(offset);
                offset = (offset + data.len() as u64).div_ceil(self.alignment) * self.alignment;
            }
            let start = (out.len() as u64).div_ceil(self.alignment) * self.alignment;
            out.resize(start as usize, 0);
            for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
                out.resize((start + off) as usize, 0);
                out.extend_from_slice(data);
            }
            out
        }
    }

    /// A GGUF string: its length, then its bytes.
    pub fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// A value's GGUF type id.
    pub fn type_id(v: &Value) -> u32 {
        match v {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// A value's GGUF encoding (without its type id).
    pub fn put_value(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::U8(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::Bool(x) => out.push(*x as u8),
            Value::String(s) => put_str(out, s),
            Value::Array(items) => {
                // An empty array's element type is irrelevant; u8 is as good as any.
                let ty = items.first().map(type_id).unwrap_or(0);
                out.extend_from_slice(&ty.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for it in items {
                    put_value(out, it);
                }
            }
        }
    }
}
