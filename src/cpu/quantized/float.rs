//! F16 and BF16 matrices, kept 16-bit: each row is widened to f32 once for all the tokens of a
//! product, then multiplied in f32.

use half::slice::HalfFloatSliceExt;

use super::super::ops::{dot, for_rows};

/// A 16-bit float type whose slices widen to f32.
pub(super) trait Half: Copy + Sync {
    fn widen(src: &[Self], out: &mut [f32]);
}

impl Half for half::f16 {
    fn widen(src: &[Self], out: &mut [f32]) {
        src.convert_to_f32_slice(out);
    }
}

impl Half for half::bf16 {
    fn widen(src: &[Self], out: &mut [f32]) {
        src.convert_to_f32_slice(out);
    }
}

/// `src` as f32 into `out` (the same length).
pub(super) fn widen<T: Half>(src: &[T], out: &mut [f32]) {
    T::widen(src, out);
}

/// `out[t][r] = Σ_c w[r][c] · x[t][c]` for the row-major `rows × cols` matrix `w`.
pub(super) fn matmul<T: Half>(w: &[T], rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
    let n = x.len() / cols;
    thread_local! {
        // The widened row, reused so a product allocates nothing.
        static ROW: std::cell::RefCell<Vec<f32>> = std::cell::RefCell::default();
    }
    for_rows(rows, cols, n, out, |r, dst| {
        ROW.with_borrow_mut(|row| {
            row.resize(cols, 0.0);
            widen(&w[r * cols..][..cols], row);
            for (t, o) in dst.iter_mut().enumerate() {
                *o = dot(row, &x[t * cols..][..cols]);
            }
        })
    });
}
