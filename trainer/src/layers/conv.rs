//! 2-D convolution (kernel `kh x kw`, stride, zero padding) on NHWC maps, computed as
//! im2col + GEMM.
//!
//! With NHWC the convolution of `b` samples is `[b*OH*OW, kh*kw*Cin] x [kh*kw*Cin, Cout]`; samples
//! are processed in small chunks so the im2col buffer stays in L2. Two shapes skip the general
//! unfold: 3x3/stride 1/pad 1 copies whole kernel rows at once (the proxies' hot path), and
//! 1x1/stride 1/pad 0 needs no unfold at all (the input already is the GEMM operand).

use crate::linalg::{matmul, MatRef};
use crate::parallel::{reduce_into, Par};
use crate::precision::{round_counting, HalfFormat, Underflow, View, ViewMut};

/// Bytes of im2col buffer one chunk aims for (half of a Zen 4 L2).
const CHUNK_BYTES: usize = 512 * 1024;

/// A convolution; weights are HWIO (`[kh, kw, cin, cout]` = `[kh*kw*cin, cout]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (both directions).
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

/// Which unfold a convolution uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unfold {
    /// 1x1, stride 1, no padding: the input is the GEMM operand.
    None,
    /// 3x3, stride 1, padding 1: kernel rows are contiguous runs of the input.
    Same3x3,
    /// Anything else: one tap at a time.
    General,
}

impl Conv2d {
    /// A `k x k` convolution with `stride` and `pad` on `h x w` maps from `cin` to `cout` channels.
    pub fn new(
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        Self::rect(h, w, cin, cout, (k, k), stride, pad)
    }

    /// A `kh x kw` convolution (`kernel = (kh, kw)`).
    pub fn rect(
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
        kernel: (usize, usize),
        stride: usize,
        pad: usize,
    ) -> Self {
        assert!(
            kernel.0 >= 1 && kernel.1 >= 1 && stride >= 1,
            "conv: empty kernel or zero stride"
        );
        assert!(
            h + 2 * pad >= kernel.0 && w + 2 * pad >= kernel.1,
            "conv: kernel larger than the padded input"
        );
        Conv2d {
            h,
            w,
            cin,
            cout,
            kh: kernel.0,
            kw: kernel.1,
            stride,
            pad,
        }
    }

    /// The 3x3/stride 1/pad 1 convolution that keeps the map size.
    pub fn same3x3(h: usize, w: usize, cin: usize, cout: usize) -> Self {
        Self::new(h, w, cin, cout, 3, 1, 1)
    }

    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }

    /// Input values per sample.
    pub fn in_len(&self) -> usize {
        self.h * self.w * self.cin
    }

    /// Output values per sample.
    pub fn out_len(&self) -> usize {
        self.oh() * self.ow() * self.cout
    }

    /// GEMM inner dimension (im2col row length) = fan-in of one output.
    pub fn k(&self) -> usize {
        self.kh * self.kw * self.cin
    }

    /// Weight shape in storage order (HWIO).
    pub fn weight_shape(&self) -> Vec<usize> {
        vec![self.kh, self.kw, self.cin, self.cout]
    }

    fn unfold(&self) -> Unfold {
        match (self.kh, self.kw, self.stride, self.pad) {
            (1, 1, 1, 0) => Unfold::None,
            (3, 3, 1, 1) => Unfold::Same3x3,
            _ => Unfold::General,
        }
    }

    /// Whether `x` is the GEMM's left operand as it is (f32 input of a 1x1 convolution), with
    /// nothing to unfold or widen into a column buffer.
    fn reads_directly(&self, x: View<'_>) -> bool {
        self.unfold() == Unfold::None && x.format().is_none()
    }

    /// The GEMM's left operand (`[rows, k]`) for the samples in `xs`: `xs` itself when `direct`
    /// (see [`Self::reads_directly`]), otherwise unfolded (or widened) into the front of `col`.
    fn operand<'a>(&self, xs: View<'a>, direct: bool, col: &'a mut [f32]) -> &'a [f32] {
        match xs {
            View::F32(v) if direct => v,
            _ => {
                let samples = xs.len() / self.in_len();
                let col = &mut col[..samples * self.oh() * self.ow() * self.k()];
                self.im2col(xs, col);
                col
            }
        }
    }

    /// Samples per chunk so that the im2col buffer is about `CHUNK_BYTES`.
    fn chunk(&self) -> usize {
        (CHUNK_BYTES / (self.oh() * self.ow() * self.k() * 4).max(1)).clamp(1, 64)
    }

    /// Unfolds `b` samples of `x` into `col` (`[b*oh*ow, k]`, column = (ky*kw+kx)*cin + c).
    pub fn im2col(&self, x: View<'_>, col: &mut [f32]) {
        match self.unfold() {
            Unfold::None => x.copy_to(0..col.len(), col),
            Unfold::Same3x3 => self.im2col_same3x3(x, col),
            Unfold::General => self.im2col_general(x, col),
        }
    }

    /// Folds `dcol` back onto the input layout: `dx` is overwritten with the summed taps.
    pub fn col2im(&self, dcol: &[f32], dx: &mut [f32]) {
        match self.unfold() {
            Unfold::None => dx.copy_from_slice(&dcol[..dx.len()]),
            Unfold::Same3x3 => self.col2im_same3x3(dcol, dx),
            Unfold::General => self.col2im_general(dcol, dx),
        }
    }

    /// Input offset of tap (ky, kx) of output (oy, ox), or None where it falls in the padding.
    #[inline]
    fn tap(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad)?;
        let ix = (ox * self.stride + kx).checked_sub(self.pad)?;
        (iy < self.h && ix < self.w).then(|| (iy * self.w + ix) * self.cin)
    }

    fn im2col_general(&self, x: View<'_>, col: &mut [f32]) {
        let (c, k, il) = (self.cin, self.k(), self.in_len());
        let (oh, ow) = (self.oh(), self.ow());
        let b = col.len() / (oh * ow * k);
        for s in 0..b {
            let xs = x.slice(s * il..(s + 1) * il);
            for oy in 0..oh {
                for ox in 0..ow {
                    let row = &mut col[((s * oh + oy) * ow + ox) * k..][..k];
                    for ky in 0..self.kh {
                        for kx in 0..self.kw {
                            let dst = &mut row[(ky * self.kw + kx) * c..][..c];
                            match self.tap(oy, ox, ky, kx) {
                                Some(o) => xs.copy_to(o..o + c, dst),
                                None => dst.fill(0.0),
                            }
                        }
                    }
                }
            }
        }
    }

    fn col2im_general(&self, dcol: &[f32], dx: &mut [f32]) {
        let (c, k, il) = (self.cin, self.k(), self.in_len());
        let (oh, ow) = (self.oh(), self.ow());
        dx.fill(0.0);
        let b = dx.len() / il;
        for s in 0..b {
            let xs = &mut dx[s * il..(s + 1) * il];
            for oy in 0..oh {
                for ox in 0..ow {
                    let row = &dcol[((s * oh + oy) * ow + ox) * k..][..k];
                    for ky in 0..self.kh {
                        for kx in 0..self.kw {
                            if let Some(o) = self.tap(oy, ox, ky, kx) {
                                let src = &row[(ky * self.kw + kx) * c..][..c];
                                for (d, &v) in xs[o..o + c].iter_mut().zip(src) {
                                    *d += v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// 3x3/stride 1/pad 1 unfold: each kernel row of an interior pixel is one contiguous copy.
    fn im2col_same3x3(&self, x: View<'_>, col: &mut [f32]) {
        let (h, w, c, k) = (self.h, self.w, self.cin, self.k());
        let b = col.len() / (h * w * k);
        for s in 0..b {
            let xs = x.slice(s * self.in_len()..(s + 1) * self.in_len());
            for oy in 0..h {
                for ox in 0..w {
                    let row = &mut col[((s * h + oy) * w + ox) * k..][..k];
                    for ky in 0..3 {
                        let seg = &mut row[ky * 3 * c..(ky + 1) * 3 * c];
                        let iy = oy as isize + ky as isize - 1;
                        if iy < 0 || iy >= h as isize {
                            seg.fill(0.0);
                            continue;
                        }
                        let line = iy as usize * w * c;
                        if ox >= 1 && ox + 1 < w {
                            // interior: the three taps of this kernel row are contiguous in NHWC
                            xs.copy_to(line + (ox - 1) * c..line + (ox + 2) * c, seg);
                        } else {
                            for kx in 0..3 {
                                let ix = ox as isize + kx as isize - 1;
                                let dst = &mut seg[kx * c..(kx + 1) * c];
                                if ix < 0 || ix >= w as isize {
                                    dst.fill(0.0);
                                } else {
                                    let at = line + ix as usize * c;
                                    xs.copy_to(at..at + c, dst);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Inverse of [`Conv2d::im2col_same3x3`], summing overlapping taps.
    fn col2im_same3x3(&self, dcol: &[f32], dx: &mut [f32]) {
        let (h, w, c, k) = (self.h, self.w, self.cin, self.k());
        dx.fill(0.0);
        let b = dx.len() / self.in_len();
        for s in 0..b {
            let xs = &mut dx[s * self.in_len()..(s + 1) * self.in_len()];
            for oy in 0..h {
                for ox in 0..w {
                    let row = &dcol[((s * h + oy) * w + ox) * k..][..k];
                    for ky in 0..3 {
                        let seg = &row[ky * 3 * c..(ky + 1) * 3 * c];
                        let iy = oy as isize + ky as isize - 1;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let line = &mut xs[iy as usize * w * c..(iy as usize + 1) * w * c];
                        if ox >= 1 && ox + 1 < w {
                            for (d, &v) in line[(ox - 1) * c..(ox + 2) * c].iter_mut().zip(seg) {
                                *d += v;
                            }
                        } else {
                            for kx in 0..3 {
                                let ix = ox as isize + kx as isize - 1;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                let dst = &mut line[ix as usize * c..(ix as usize + 1) * c];
                                for (d, &v) in dst.iter_mut().zip(&seg[kx * c..(kx + 1) * c]) {
                                    *d += v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `y = conv(x) + bias` for `n` samples (no bias term when `bias` is None), rounded to
    /// `fmt` (each chunk right after its GEMM, while it is still in cache). Into f32 storage the
    /// GEMM writes directly; into half storage it writes a chunk buffer that is then narrowed.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        par: &Par,
        x: View<'_>,
        n: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        y: ViewMut<'_>,
        fmt: Option<HalfFormat>,
    ) {
        let (hw, k, cout) = (self.oh() * self.ow(), self.k(), self.cout);
        let (il, ol) = (self.in_len(), self.out_len());
        let chunk = self.chunk();
        assert!(y.len() >= n * ol, "conv: output too small");
        let ranges = par.ranges(n);
        let parts = y.split(&ranges, ol);
        par.run(ranges.into_iter().zip(parts).collect(), |(r, mut yp)| {
            let direct = self.reads_directly(x);
            let mut col = if direct {
                Vec::new()
            } else {
                vec![0.0f32; chunk.min(r.len()) * hw * k]
            };
            let mut scratch = Vec::new();
            let mut s = r.start;
            while s < r.end {
                let b = chunk.min(r.end - s);
                let xs = x.slice(s * il..(s + b) * il);
                let lhs = self.operand(xs, direct, &mut col);
                let out = (s - r.start) * ol..(s - r.start + b) * ol;
                yp.fill(out, fmt, &mut scratch, |yc| {
                    if let Some(bias) = bias {
                        for row in yc.chunks_exact_mut(cout) {
                            row.copy_from_slice(bias);
                        }
                    }
                    matmul(
                        b * hw,
                        cout,
                        k,
                        yc,
                        cout,
                        bias.is_some(),
                        MatRef::rows(lhs, k),
                        MatRef::rows(weight, cout),
                    );
                });
                s += b;
            }
        });
    }

    /// Writes `dweight`, `dbias` (if the convolution has a bias) and (if asked) `dx` from the
    /// output gradient `dy`; `dx` is rounded to `dx_fmt` chunk by chunk as it is produced, and
    /// the returned count says how many of its values flushed to zero.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        par: &Par,
        x: View<'_>,
        dy: &[f32],
        n: usize,
        weight: &[f32],
        dweight: &mut [f32],
        dbias: Option<&mut [f32]>,
        dx: Option<&mut [f32]>,
        dx_fmt: Option<HalfFormat>,
    ) -> Underflow {
        let (hw, k, cout) = (self.oh() * self.ow(), self.k(), self.cout);
        let (il, ol) = (self.in_len(), self.out_len());
        let chunk = self.chunk();
        let unfold = self.unfold();
        let want_dx = dx.is_some();
        let want_db = dbias.is_some();
        let mut empty: [f32; 0] = [];
        let (dx_buf, dx_stride) = match dx {
            Some(d) => (&mut d[..n * il], il),
            None => (&mut empty[..], 0),
        };
        let parts = par.run_split(n, dx_buf, dx_stride, |r, dxp| {
            let m = chunk.min(r.len()) * hw * k;
            let unfolds = unfold != Unfold::None;
            let direct = self.reads_directly(x);
            let mut col = if direct { Vec::new() } else { vec![0.0f32; m] };
            let mut dcol = if want_dx && unfolds {
                vec![0.0f32; m]
            } else {
                Vec::new()
            };
            let mut dw = vec![0.0f32; k * cout];
            let mut db = vec![0.0f32; if want_db { cout } else { 0 }];
            let mut u = Underflow::default();
            let mut s = r.start;
            while s < r.end {
                let b = chunk.min(r.end - s);
                let rows = b * hw;
                let xs = x.slice(s * il..(s + b) * il);
                let lhs = self.operand(xs, direct, &mut col);
                let dyc = &dy[s * ol..(s + b) * ol];
                // dW += col^T * dy (gemm reads the transpose through strides, no copy)
                matmul(
                    k,
                    cout,
                    rows,
                    &mut dw,
                    cout,
                    true,
                    MatRef::transposed(lhs, k),
                    MatRef::rows(dyc, cout),
                );
                if want_db {
                    for row in dyc.chunks_exact(cout) {
                        for (a, &v) in db.iter_mut().zip(row) {
                            *a += v;
                        }
                    }
                }
                if want_dx {
                    let dxc = &mut dxp[(s - r.start) * il..(s - r.start + b) * il];
                    // without an unfold, dcol is dx itself
                    let dst: &mut [f32] = if unfolds { &mut dcol[..rows * k] } else { dxc };
                    matmul(
                        rows,
                        k,
                        cout,
                        dst,
                        k,
                        false,
                        MatRef::rows(dyc, cout),
                        MatRef::transposed(weight, cout),
                    );
                    let dxc = &mut dxp[(s - r.start) * il..(s - r.start + b) * il];
                    if unfolds {
                        self.col2im(&dcol[..rows * k], dxc);
                    }
                    u.add(round_counting(dx_fmt, dxc));
                }
                s += b;
            }
            (dw, db, u)
        });
        dweight.fill(0.0);
        let mut u = Underflow::default();
        let mut dws = Vec::with_capacity(parts.len());
        let mut dbs = Vec::with_capacity(parts.len());
        for (dw, db, pu) in parts {
            dws.push(dw);
            dbs.push(db);
            u.add(pu);
        }
        reduce_into(dweight, &dws);
        if let Some(dbias) = dbias {
            dbias.fill(0.0);
            reduce_into(dbias, &dbs);
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_close, numeric_grad, rand_vec};

    /// The shapes the models use, each unfold path included.
    fn shapes() -> Vec<Conv2d> {
        vec![
            Conv2d::same3x3(5, 4, 3, 4),
            Conv2d::new(5, 4, 3, 4, 1, 1, 0),
            Conv2d::new(7, 6, 2, 3, 3, 2, 1),
            Conv2d::new(7, 7, 3, 2, 1, 2, 0),
            Conv2d::rect(6, 5, 2, 3, (2, 3), 1, 0),
            Conv2d::new(9, 9, 2, 3, 5, 2, 2),
            Conv2d::new(11, 11, 3, 2, 7, 4, 3),
        ]
    }

    /// Direct convolution in f64: the definition the GEMM formulation must equal.
    fn direct(conv: &Conv2d, x: &[f32], n: usize, w: &[f32], b: Option<&[f32]>) -> Vec<f64> {
        let (oh, ow) = (conv.oh(), conv.ow());
        let mut y = vec![0.0f64; n * conv.out_len()];
        for s in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..conv.cout {
                        let mut acc = b.map_or(0.0, |b| b[o] as f64);
                        for ky in 0..conv.kh {
                            for kx in 0..conv.kw {
                                let iy = (oy * conv.stride + ky) as isize - conv.pad as isize;
                                let ix = (ox * conv.stride + kx) as isize - conv.pad as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= conv.h as isize
                                    || ix >= conv.w as isize
                                {
                                    continue;
                                }
                                for c in 0..conv.cin {
                                    let xv = x[s * conv.in_len()
                                        + (iy as usize * conv.w + ix as usize) * conv.cin
                                        + c];
                                    let wv =
                                        w[((ky * conv.kw + kx) * conv.cin + c) * conv.cout + o];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[s * conv.out_len() + (oy * ow + ox) * conv.cout + o] = acc;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn conv_backward_matches_finite_differences() {
        for conv in shapes() {
            let n = 3;
            let x = rand_vec(1, n * conv.in_len(), 1.0);
            let w = rand_vec(2, conv.k() * conv.cout, 0.3);
            let b = rand_vec(3, conv.cout, 0.1);
            let r = rand_vec(4, n * conv.out_len(), 1.0);
            for threads in [1, 2] {
                let par = Par::new(threads);
                let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
                    let mut y = vec![0.0; n * conv.out_len()];
                    conv.forward(&par, x.into(), n, w, Some(b), (&mut y[..]).into(), None);
                    y
                };
                let (mut dw, mut db, mut dx) =
                    (vec![0.0; w.len()], vec![0.0; conv.cout], vec![7.0; x.len()]);
                conv.backward(
                    &par,
                    (&x).into(),
                    &r,
                    n,
                    &w,
                    &mut dw,
                    Some(&mut db),
                    Some(&mut dx),
                    None,
                );
                let what = format!("{conv:?} threads {threads}");
                assert_close(
                    &dx,
                    &numeric_grad(&x, &r, |x| fwd(x, &w, &b)),
                    1e-2,
                    &format!("dx {what}"),
                );
                assert_close(
                    &dw,
                    &numeric_grad(&w, &r, |w| fwd(&x, w, &b)),
                    1e-2,
                    &format!("dw {what}"),
                );
                assert_close(
                    &db,
                    &numeric_grad(&b, &r, |b| fwd(&x, &w, b)),
                    1e-2,
                    &format!("db {what}"),
                );
                // without a bias (ResNet convolutions) the other gradients are the same
                let (mut dw2, mut dx2) = (vec![1.0; w.len()], vec![1.0; x.len()]);
                conv.backward(
                    &par,
                    (&x).into(),
                    &r,
                    n,
                    &w,
                    &mut dw2,
                    None,
                    Some(&mut dx2),
                    None,
                );
                assert_eq!((&dw2, &dx2), (&dw, &dx), "{what}");
            }
        }
    }

    #[test]
    fn conv_forward_matches_direct_convolution() {
        for conv in shapes() {
            let n = 2;
            let x = rand_vec(5, n * conv.in_len(), 1.0);
            let w = rand_vec(6, conv.k() * conv.cout, 0.5);
            let b = rand_vec(7, conv.cout, 0.3);
            for bias in [Some(&b[..]), None] {
                let mut y = vec![f32::NAN; n * conv.out_len()];
                conv.forward(
                    &Par::new(2),
                    (&x).into(),
                    n,
                    &w,
                    bias,
                    (&mut y[..]).into(),
                    None,
                );
                let want = direct(&conv, &x, n, &w, bias);
                for (i, (&got, &want)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (got as f64 - want).abs() < 1e-4,
                        "{conv:?}[{i}]: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn rounding_inside_the_convolution_equals_rounding_after_it() {
        use crate::precision::{round, HalfFormat, Stored};
        let conv = Conv2d::same3x3(6, 6, 3, 5);
        let n = 70; // several chunks per thread
                    // tiny values so that some of dx flushes to zero in f16
        let x = rand_vec(8, n * conv.in_len(), 1.0);
        let w = rand_vec(9, conv.k() * conv.cout, 1e-4);
        let dy = rand_vec(10, n * conv.out_len(), 1e-4);
        let par = Par::new(2);
        for fmt in [HalfFormat::F16, HalfFormat::Bf16] {
            let mut plain = vec![0.0; n * conv.out_len()];
            conv.forward(
                &par,
                (&x).into(),
                n,
                &w,
                None,
                (&mut plain[..]).into(),
                None,
            );
            round(Some(fmt), &mut plain);
            let mut fused = vec![0.0; n * conv.out_len()];
            conv.forward(
                &par,
                (&x).into(),
                n,
                &w,
                None,
                (&mut fused[..]).into(),
                Some(fmt),
            );
            assert_eq!(plain, fused, "{fmt:?} forward");
            // into half storage: the same values, kept at 16 bits
            let mut stored = Stored::default();
            stored.resize(Some(fmt), n * conv.out_len());
            conv.forward(&par, (&x).into(), n, &w, None, stored.view_mut(), Some(fmt));
            assert!(matches!(stored, Stored::Half(..)));
            assert_eq!(stored.to_f32(), plain, "{fmt:?} stored forward");
            // from half-stored input: what the rounded f32 input gives, forward and backward
            let mut xr = x.clone();
            round(Some(fmt), &mut xr);
            let mut xh = Stored::default();
            xh.resize(Some(fmt), xr.len());
            xh.view_mut()
                .fill(0..xr.len(), Some(fmt), &mut Vec::new(), |o| {
                    o.copy_from_slice(&xr)
                });
            for c in [
                conv,
                Conv2d::new(6, 6, 3, 5, 1, 1, 0),
                Conv2d::new(6, 6, 3, 5, 3, 2, 1),
            ] {
                let (mut from_f32, mut from_half) =
                    (vec![0.0; n * c.out_len()], vec![0.0; n * c.out_len()]);
                let wc = &w[..c.k() * c.cout];
                c.forward(
                    &par,
                    (&xr).into(),
                    n,
                    wc,
                    None,
                    (&mut from_f32[..]).into(),
                    Some(fmt),
                );
                c.forward(
                    &par,
                    xh.view(),
                    n,
                    wc,
                    None,
                    (&mut from_half[..]).into(),
                    Some(fmt),
                );
                assert_eq!(from_f32, from_half, "{fmt:?} {c:?} forward from half input");
                let dyc = &dy[..n * c.out_len()];
                let grads = |xin: View<'_>| {
                    let (mut dw, mut dx) = (vec![0.0; wc.len()], vec![0.0; xr.len()]);
                    let u = c.backward(
                        &par,
                        xin,
                        dyc,
                        n,
                        wc,
                        &mut dw,
                        None,
                        Some(&mut dx),
                        Some(fmt),
                    );
                    (dw, dx, u)
                };
                assert_eq!(
                    grads((&xr).into()),
                    grads(xh.view()),
                    "{fmt:?} {c:?} backward from half input"
                );
            }
            let mut dw = vec![0.0; w.len()];
            let mut dx_plain = vec![0.0; x.len()];
            let u0 = conv.backward(
                &par,
                (&x).into(),
                &dy,
                n,
                &w,
                &mut dw,
                None,
                Some(&mut dx_plain),
                None,
            );
            assert_eq!(u0, Underflow::default());
            let u_plain = round_counting(Some(fmt), &mut dx_plain);
            let mut dx_fused = vec![0.0; x.len()];
            let u_fused = conv.backward(
                &par,
                (&x).into(),
                &dy,
                n,
                &w,
                &mut dw,
                None,
                Some(&mut dx_fused),
                Some(fmt),
            );
            assert_eq!(dx_plain, dx_fused, "{fmt:?} dx");
            assert_eq!(u_plain, u_fused, "{fmt:?} counts");
            if fmt == HalfFormat::F16 {
                assert!(u_fused.flushed > 0, "the test should exercise flushes");
            }
        }
    }

    #[test]
    fn output_sizes_follow_the_usual_formula() {
        // AlexNet conv1 on 224x224 and ResNet-50 conv1: the sizes the full-size models rely on
        assert_eq!(Conv2d::new(224, 224, 3, 96, 11, 4, 2).oh(), 55);
        assert_eq!(Conv2d::new(224, 224, 3, 64, 7, 2, 3).ow(), 112);
        assert_eq!(Conv2d::new(56, 56, 64, 128, 1, 2, 0).oh(), 28);
        assert_eq!(Conv2d::new(7, 7, 1, 1, 3, 2, 1).oh(), 4);
    }
}
