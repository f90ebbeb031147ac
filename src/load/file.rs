//! Native loading from files: each part is memory-mapped and fed to the [`Loader`] in pieces,
//! and the pages of each piece are dropped once placed, so the process never holds the file.

use std::path::{Path, PathBuf};

use super::{split, Loader};
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};

/// Bytes fed at a time.
const PIECE: usize = 16 << 20;

/// The parts of the model at `path`: the path itself, or every part when it names the first
/// part of a split model (`…-00001-of-000NN.gguf`).
pub fn parts(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match split::part_names(name) {
        Some(names) => names.into_iter().map(|n| path.with_file_name(n)).collect(),
        None => vec![path.to_path_buf()],
    }
}

/// A read-only memory map of `path`.
fn map(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    // SAFETY: the map is read-only and private to this load; a file changed underneath it while
    // loading gives wrong weights (or a bad_model), as reading it would, not memory unsafety in
    // Rust terms beyond what every mmap-based loader (llama.cpp's too) accepts.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// Load the model at `path` (a whole file, or a split model's first part).
pub fn load(path: &Path, options: &EngineOptions) -> Result<Engine> {
    let maps = parts(path).iter().map(|p| map(p)).collect::<Result<Vec<_>>>()?;
    let mut loader = Loader::new(options.clone(), maps.iter().map(|m| m.len() as u64).collect())?;
    for (k, m) in maps.iter().enumerate().skip(1) {
        if loader.part_header(k, m)? != 0 {
            return Err(Error::BadModel(format!("part {} ends inside its header", k + 1)));
        }
    }
    pollster::block_on(async {
        for m in &maps {
            for (i, piece) in m.chunks(PIECE).enumerate() {
                loader.push(piece).await?;
                // The piece is on the backend: its pages can go (they are the file's, clean).
                // SAFETY: a read-only file mapping; DONTNEED only drops cached pages, which are
                // read again from the file if touched.
                #[cfg(unix)]
                let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, i * PIECE, piece.len()) };
            }
        }
        loader.finish().await
    })
}

/// The header of the model file at `path` (its first part, for a split model), without
/// reading the weights.
pub fn header(path: &Path) -> Result<crate::gguf::Header> {
    let m = map(path)?;
    match crate::gguf::Header::parse_prefix(&m, m.len() as u64)? {
        crate::gguf::Prefix::Header(h) => Ok(h),
        crate::gguf::Prefix::NeedBytes(_) => unreachable!("the whole file was given"),
    }
}
