//! Models published in parts by llama.cpp's `gguf-split`: `name-00001-of-00003.gguf`, …, each a
//! GGUF file of its own. The first part has the model's metadata; every part has `split.no`,
//! `split.count` and `split.tensors.count`, and a tensor table of its tensors, whose data lies in
//! that part. Loading reads the parts in order as one stream.

use crate::error::{Error, Result};
use crate::gguf::{Header, TensorInfo};

pub const KEY_NO: &str = "split.no";
pub const KEY_COUNT: &str = "split.count";
pub const KEY_TENSORS: &str = "split.tensors.count";

/// The parts' file names when `name` is a first part (`…-00001-of-000NN.gguf`), else `None`.
pub fn part_names(name: &str) -> Option<Vec<String>> {
    let stem = name.strip_suffix(".gguf")?;
    let (head, count) = stem.rsplit_once("-of-")?;
    let (prefix, no) = head.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(no) || !digits(count) || no != "00001" {
        return None;
    }
    let n: usize = count.parse().ok().filter(|&n| n >= 1)?;
    Some((1..=n).map(|k| format!("{prefix}-{k:05}-of-{n:05}.gguf")).collect())
}

/// How many parts the first part's header says the model has (1 for a whole file).
pub fn count(first: &Header) -> Result<usize> {
    match first.u64_opt(KEY_COUNT)? {
        None | Some(0) => Ok(1),
        Some(n) if n > 9999 => Err(Error::BadModel(format!("{KEY_COUNT} is {n}"))),
        Some(n) => Ok(n as usize),
    }
}

/// The tensor tables of every part as one, with offsets in the stream of all parts (part `k`
/// starts at the sum of the sizes before it). Checks that the parts belong together.
pub fn merged_tensors(headers: &[Header]) -> Result<Vec<TensorInfo>> {
    let n = headers.len();
    let mut all = Vec::new();
    let mut base = 0u64;
    for (k, h) in headers.iter().enumerate() {
        if n > 1 {
            let no = h.u64_opt(KEY_NO)?;
            // gguf-split numbers parts from 0.
            if no != Some(k as u64) {
                return Err(Error::BadModel(format!("part {} of {n} says it is split.no {no:?}", k + 1)));
            }
            if count(h)? != n {
                return Err(Error::BadModel(format!("part {} of {n} says the model has {} parts", k + 1, count(h)?)));
            }
        }
        all.extend(h.tensors.iter().map(|t| TensorInfo { offset: t.offset + base, ..t.clone() }));
        base += h.file_size;
    }
    if n > 1 {
        let want = headers[0].u64(KEY_TENSORS)?;
        if want != all.len() as u64 {
            return Err(Error::BadModel(format!("the parts hold {} tensors; {KEY_TENSORS} says {want}", all.len())));
        }
        let mut names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::BadModel(format!("tensor {:?} is in two parts", w[0])));
        }
    }
    Ok(all)
}

/// Split a whole GGUF file at tensor boundaries the way `gguf-split --split-max-size` does: the
/// tensors in file order, a new part when the next tensor would take the current one past
/// `max_bytes` of data; the first part keeps every metadata key, each part gets the split keys.
pub fn split_file(bytes: &[u8], max_bytes: u64) -> Result<Vec<Vec<u8>>> {
    use crate::gguf::writer::GgufWriter;
    use crate::gguf::{Gguf, Value};
    let g = Gguf::parse(bytes)?;
    if g.get(KEY_COUNT).is_some() {
        return Err(Error::InvalidArgument("the file is already a part of a split model".into()));
    }
    let mut order: Vec<&TensorInfo> = g.tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    let mut groups: Vec<Vec<&TensorInfo>> = vec![Vec::new()];
    let mut size = 0;
    for t in order {
        let current = groups.last_mut().expect("one group at least");
        if !current.is_empty() && size + t.size > max_bytes {
            groups.push(Vec::new());
            size = 0;
        }
        groups.last_mut().expect("one group at least").push(t);
        size += t.size;
    }
    let n = groups.len();
    if n > 9999 {
        return Err(Error::InvalidArgument(format!("{n} parts: choose a larger part size")));
    }
    let mut parts = Vec::with_capacity(n);
    for (k, group) in groups.into_iter().enumerate() {
        let mut w = GgufWriter { alignment: g.alignment, ..GgufWriter::default() };
        if k == 0 {
            for (key, v) in &g.metadata {
                w.kv(key, v.clone());
            }
        }
        w.kv(KEY_NO, Value::U16(k as u16));
        w.kv(KEY_COUNT, Value::U16(n as u16));
        w.kv(KEY_TENSORS, Value::I32(g.tensors.len() as i32));
        for t in group {
            let data = g.tensor(&t.name).expect("listed").data.to_vec();
            w.tensor(&t.name, &t.dims, t.dtype.ggml_type(), data);
        }
        parts.push(w.to_bytes());
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_parts_name_every_part() {
        assert_eq!(
            part_names("dir/m-Q4_K-00001-of-00003.gguf").unwrap(),
            ["dir/m-Q4_K-00001-of-00003.gguf", "dir/m-Q4_K-00002-of-00003.gguf", "dir/m-Q4_K-00003-of-00003.gguf"]
        );
        assert_eq!(part_names("m-00002-of-00003.gguf"), None);
        assert_eq!(part_names("m.gguf"), None);
        assert_eq!(part_names("m-1-of-3.gguf"), None);
    }
}
