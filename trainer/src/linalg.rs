//! Safe wrapper over `gemm::gemm` for the f32 matrix products of the layers.

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    /// Backing storage.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major view with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        MatRef {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// Transposed view of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        MatRef {
            data,
            rs: 1,
            cs: cols,
        }
    }
    /// Largest element index touched by an `r x c` use of this view.
    fn last(&self, r: usize, c: usize) -> usize {
        (r - 1) * self.rs + (c - 1) * self.cs
    }
}

/// `dst[m x n] (row-major, row stride ldd) = (accumulate ? dst : 0) + a[m x k] * b[k x n]`, single-threaded.
///
/// Panics if a view is too short: that is an internal shape bug, never a user-input error.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    ldd: usize,
    accumulate: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * ldd..i * ldd + n].fill(0.0);
            }
        }
        return;
    }
    assert!(
        ldd >= n && (m - 1) * ldd + n <= dst.len(),
        "matmul: dst too small"
    );
    assert!(a.last(m, k) < a.data.len(), "matmul: lhs too small");
    assert!(b.last(k, n) < b.data.len(), "matmul: rhs too small");
    // SAFETY: the asserts above bound every index gemm touches inside the three slices;
    // `dst` is a unique borrow, so it cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ldd as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_naive_with_transposes() {
        let (m, n, k) = (5, 3, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i as f32).sin()).collect(); // b stored transposed (n x k)
        let mut c = vec![1.0f32; m * n];
        matmul(
            m,
            n,
            k,
            &mut c,
            n,
            true,
            MatRef::rows(&a, k),
            MatRef::transposed(&bt, k),
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|p| a[i * k + p] * bt[j * k + p]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() < 1e-4);
            }
        }
    }
}
