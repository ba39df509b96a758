//! AVX-512 kernels of the batch-norm passes for channel counts that are a multiple of 16.
//!
//! The portable loops keep the per-channel accumulators in memory and reload them on every row;
//! these keep them in registers, widen half-stored inputs and round outputs in registers too.
//! Hand-written because no crate offers these passes over NHWC rows. Every kernel does the
//! portable loops' arithmetic in the same order (no fused multiply-add), so both paths give the
//! same values; the tests in the parent module check it.

use std::arch::x86_64::*;

use crate::precision::{x86 as lanes, HalfFormat, View, ViewMut};

/// Lanes per vector.
const L: usize = 16;
/// Channel vectors accumulated together (8 accumulators, well inside the 32 registers).
const GROUP: usize = 4;

/// Input storage codes (const generic parameters, so each combination is its own kernel).
const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;

/// Whether the kernels run for `c` channels on this CPU.
pub(super) fn usable(c: usize) -> bool {
    c > 0 && c.is_multiple_of(L) && crate::precision::simd()
}

/// The storage code and base pointer of a view.
fn source(x: View<'_>) -> (u8, *const u8) {
    match x {
        View::F32(v) => (F32, v.as_ptr().cast()),
        View::Half(HalfFormat::F16, v) => (F16, v.as_ptr().cast()),
        View::Half(HalfFormat::Bf16, v) => (BF16, v.as_ptr().cast()),
    }
}

/// The rounding code of an output format.
fn rounding(fmt: Option<HalfFormat>) -> u8 {
    match fmt {
        None => F32,
        Some(HalfFormat::F16) => F16,
        Some(HalfFormat::Bf16) => BF16,
    }
}

/// 16 values of the input starting at element `i`, as f32.
///
/// # Safety
/// AVX-512F; elements `i..i + 16` lie inside the input `base` points to, stored as `S` says.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load<const S: u8>(base: *const u8, i: usize) -> __m512 {
    unsafe {
        match S {
            F32 => _mm512_loadu_ps(base.cast::<f32>().add(i)),
            F16 => _mm512_cvtph_ps(_mm256_loadu_si256(base.cast::<u16>().add(i).cast())),
            _ => {
                let w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(base.cast::<u16>().add(i).cast()));
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w))
            }
        }
    }
}

/// `v` rounded to the format `R` says (unchanged for f32).
#[inline]
#[target_feature(enable = "avx512f")]
fn round<const R: u8>(v: __m512) -> __m512 {
    match R {
        F32 => v,
        F16 => lanes::f16_lanes(v),
        _ => lanes::bf16_lanes(v),
    }
}

/// Stores `v` rounded to the half format `R` as 16 bit patterns at `dst`.
///
/// # Safety
/// AVX-512F; `dst..dst + 16` is writable.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store_bits<const R: u8>(dst: *mut u16, v: __m512) {
    let bits = match R {
        F16 => _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v),
        BF16 => _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(_mm512_castps_si512(
            lanes::bf16_lanes(v),
        ))),
        _ => unreachable!("narrowing needs a half format"),
    };
    // SAFETY: the caller guarantees 16 writable u16s.
    unsafe { _mm256_storeu_si256(dst.cast(), bits) };
}

/// Adds the 16 lanes of `v` to `dst[..16]` in f64.
#[inline]
#[target_feature(enable = "avx512f")]
fn add_f64(dst: &mut [f64], v: __m512) {
    let mut tmp = [0.0f32; L];
    // SAFETY: `tmp` holds 16 f32s.
    unsafe { _mm512_storeu_ps(tmp.as_mut_ptr(), v) };
    for (d, t) in dst[..L].iter_mut().zip(tmp) {
        *d += t as f64;
    }
}

/// Calls `$f::<S, G, ..$p>(args)` for every group `$g` of up to [`GROUP`] channel vectors,
/// with the storage `S` of `$code`.
macro_rules! for_groups {
    ($code:expr, $nv:expr, $f:ident [$($p:tt),*]; $g:ident => $($arg:expr),*) => {{
        let mut $g = 0;
        while $g < $nv {
            let n = ($nv - $g).min(GROUP);
            // SAFETY (for every arm): the caller checked the CPU and the buffer lengths.
            unsafe {
                match ($code, n) {
                    (F32, 1) => $f::<F32, 1 $(,$p)*>($($arg),*),
                    (F32, 2) => $f::<F32, 2 $(,$p)*>($($arg),*),
                    (F32, 3) => $f::<F32, 3 $(,$p)*>($($arg),*),
                    (F32, _) => $f::<F32, 4 $(,$p)*>($($arg),*),
                    (F16, 1) => $f::<F16, 1 $(,$p)*>($($arg),*),
                    (F16, 2) => $f::<F16, 2 $(,$p)*>($($arg),*),
                    (F16, 3) => $f::<F16, 3 $(,$p)*>($($arg),*),
                    (F16, _) => $f::<F16, 4 $(,$p)*>($($arg),*),
                    (_, 1) => $f::<BF16, 1 $(,$p)*>($($arg),*),
                    (_, 2) => $f::<BF16, 2 $(,$p)*>($($arg),*),
                    (_, 3) => $f::<BF16, 3 $(,$p)*>($($arg),*),
                    (_, _) => $f::<BF16, 4 $(,$p)*>($($arg),*),
                }
            }
            $g += n;
        }
    }};
}

/// Per-channel sums of `x` and `x*x` over its rows (`[sums; squares]`, `2c` values), summed in
/// f32 over blocks of `block` rows and then in f64.
pub(super) fn stats(x: View<'_>, c: usize, block: usize) -> Vec<f64> {
    assert!(usable(c) && x.len().is_multiple_of(c));
    let rows = x.len() / c;
    let mut out = vec![0.0f64; 2 * c];
    let (code, base) = source(x);
    for_groups!(code, c / L, stats_group []; g => base, rows, c, g, block, &mut out);
    out
}

/// [`stats`] for channel vectors `g..g + G`.
///
/// # Safety
/// AVX-512F; `base` holds `rows * c` values stored as `S`.
#[target_feature(enable = "avx512f")]
unsafe fn stats_group<const S: u8, const G: usize>(
    base: *const u8,
    rows: usize,
    c: usize,
    g: usize,
    block: usize,
    out: &mut [f64],
) {
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + block).min(rows);
        let mut s = [_mm512_setzero_ps(); G];
        let mut q = [_mm512_setzero_ps(); G];
        for r in r0..r1 {
            for j in 0..G {
                // SAFETY: row r < rows, channel (g + j) * 16 + 15 < c.
                let v = unsafe { load::<S>(base, r * c + (g + j) * L) };
                s[j] = _mm512_add_ps(s[j], v);
                q[j] = _mm512_add_ps(q[j], _mm512_mul_ps(v, v));
            }
        }
        for j in 0..G {
            add_f64(&mut out[(g + j) * L..], s[j]);
            add_f64(&mut out[c + (g + j) * L..], q[j]);
        }
        r0 = r1;
    }
}

/// `y = x * scale + shift` per channel, then `max(y, 0)` if `relu`, rounded to `fmt`: in place
/// into f32 storage, narrowed into half storage (whose format must be `fmt`).
pub(super) fn apply(
    x: View<'_>,
    c: usize,
    scale: &[f32],
    shift: &[f32],
    y: ViewMut<'_>,
    relu: bool,
    fmt: Option<HalfFormat>,
) {
    assert!(usable(c) && x.len().is_multiple_of(c) && y.len() == x.len());
    assert!(scale.len() == c && shift.len() == c);
    // half storage is written in its own format only (the kernels narrow to `fmt`)
    assert!(y.format().is_none() || y.format() == fmt);
    let (code, base) = source(x);
    let rows = x.len() / c;
    let (sc, sh) = (scale.as_ptr(), shift.as_ptr());
    // SAFETY: checked above; one kernel per (storage in, rounding, relu, storage out).
    unsafe {
        macro_rules! go {
            ($s:expr, $y:expr, $narrow:expr) => {
                match (rounding(fmt), relu) {
                    (F32, false) => apply_k::<$s, F32, false, false>(base, rows, c, sc, sh, $y),
                    (F32, true) => apply_k::<$s, F32, true, false>(base, rows, c, sc, sh, $y),
                    (F16, false) => apply_k::<$s, F16, false, $narrow>(base, rows, c, sc, sh, $y),
                    (F16, true) => apply_k::<$s, F16, true, $narrow>(base, rows, c, sc, sh, $y),
                    (_, false) => apply_k::<$s, BF16, false, $narrow>(base, rows, c, sc, sh, $y),
                    (_, true) => apply_k::<$s, BF16, true, $narrow>(base, rows, c, sc, sh, $y),
                }
            };
        }
        macro_rules! out {
            ($s:expr) => {
                match y {
                    ViewMut::F32(v) => go!($s, v.as_mut_ptr().cast::<u8>(), false),
                    ViewMut::Half(_, v) => go!($s, v.as_mut_ptr().cast::<u8>(), true),
                }
            };
        }
        match code {
            F32 => out!(F32),
            F16 => out!(F16),
            _ => out!(BF16),
        }
    }
}

/// # Safety
/// AVX-512F; `base` and `y` hold `rows * c` values (`y` as bit patterns of `R` with `NARROW`,
/// else as f32), `scale` and `shift` `c`.
#[target_feature(enable = "avx512f")]
unsafe fn apply_k<const S: u8, const R: u8, const RELU: bool, const NARROW: bool>(
    base: *const u8,
    rows: usize,
    c: usize,
    scale: *const f32,
    shift: *const f32,
    y: *mut u8,
) {
    let zero = _mm512_setzero_ps();
    for r in 0..rows {
        for v in (0..c).step_by(L) {
            let i = r * c + v;
            // SAFETY: i + 16 <= rows * c and v + 16 <= c.
            unsafe {
                let s = _mm512_loadu_ps(scale.add(v));
                let t = _mm512_loadu_ps(shift.add(v));
                let mut o = _mm512_add_ps(_mm512_mul_ps(load::<S>(base, i), s), t);
                if RELU {
                    o = _mm512_max_ps(o, zero);
                }
                if NARROW {
                    store_bits::<R>(y.cast::<u16>().add(i), o);
                } else {
                    _mm512_storeu_ps(y.cast::<f32>().add(i), round::<R>(o));
                }
            }
        }
    }
}

/// Backward pass 1: zeroes `g` where the fused ReLU's output `relu_out` is not positive (in
/// place), and returns the per-channel sums of `g` and `g * (x - mean)` (`[g; g*(x-mean)]`),
/// in f32 over blocks of `block` rows and then in f64.
pub(super) fn backward_sums(
    x: View<'_>,
    relu_out: Option<View<'_>>,
    g: &mut [f32],
    c: usize,
    mean: &[f32],
    block: usize,
) -> Vec<f64> {
    assert!(usable(c) && x.len().is_multiple_of(c) && g.len() == x.len() && mean.len() == c);
    // the ReLU output is stored like the BN input (both are kept by the same layer)
    assert!(relu_out.is_none_or(|y| y.len() == g.len() && y.format() == x.format()));
    let rows = x.len() / c;
    let mut out = vec![0.0f64; 2 * c];
    let (code, base) = source(x);
    let gp = g.as_mut_ptr();
    let mp = mean.as_ptr();
    match relu_out {
        Some(y) => {
            let yp = source(y).1;
            for_groups!(code, c / L, sums_group [true]; grp => base, yp, gp, mp, rows, c, grp, block, &mut out);
        }
        None => {
            let yp: *const u8 = std::ptr::null();
            for_groups!(code, c / L, sums_group [false]; grp => base, yp, gp, mp, rows, c, grp, block, &mut out);
        }
    }
    out
}

/// [`backward_sums`] for channel vectors `grp..grp + G`.
///
/// # Safety
/// AVX-512F; `base`, `g` (and `y` with `MASK`, stored like `base`) hold `rows * c` values,
/// `mean` `c`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn sums_group<const S: u8, const G: usize, const MASK: bool>(
    base: *const u8,
    y: *const u8,
    g: *mut f32,
    mean: *const f32,
    rows: usize,
    c: usize,
    grp: usize,
    block: usize,
    out: &mut [f64],
) {
    let zero = _mm512_setzero_ps();
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + block).min(rows);
        let mut sdy = [zero; G];
        let mut sdx = [zero; G];
        for r in r0..r1 {
            for j in 0..G {
                let ch = (grp + j) * L;
                let i = r * c + ch;
                // SAFETY: i + 16 <= rows * c and ch + 16 <= c.
                unsafe {
                    let mut gv = _mm512_loadu_ps(g.add(i));
                    if MASK {
                        let keep = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(load::<S>(y, i), zero);
                        gv = _mm512_maskz_mov_ps(keep, gv);
                        _mm512_storeu_ps(g.add(i), gv);
                    }
                    let xc = _mm512_sub_ps(load::<S>(base, i), _mm512_loadu_ps(mean.add(ch)));
                    sdy[j] = _mm512_add_ps(sdy[j], gv);
                    sdx[j] = _mm512_add_ps(sdx[j], _mm512_mul_ps(gv, xc));
                }
            }
        }
        for j in 0..G {
            add_f64(&mut out[(grp + j) * L..], sdy[j]);
            add_f64(&mut out[c + (grp + j) * L..], sdx[j]);
        }
        r0 = r1;
    }
}

/// Backward pass 2, in place: `g = a * g + b * x + k` per channel, rounded to `fmt`; returns
/// (values nonzero before rounding, of those flushed to zero).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_dx(
    x: View<'_>,
    g: &mut [f32],
    c: usize,
    a: &[f32],
    b: &[f32],
    k: &[f32],
    fmt: Option<HalfFormat>,
) -> (u64, u64) {
    assert!(usable(c) && x.len().is_multiple_of(c) && g.len() == x.len());
    assert!(a.len() == c && b.len() == c && k.len() == c);
    let (code, base) = source(x);
    let rows = x.len() / c;
    let gp = g.as_mut_ptr();
    let co = [a.as_ptr(), b.as_ptr(), k.as_ptr()];
    // SAFETY: checked above; one kernel per (storage, rounding).
    unsafe {
        macro_rules! go {
            ($s:expr) => {
                match rounding(fmt) {
                    F32 => dx_k::<$s, F32>(base, gp, rows, c, co),
                    F16 => dx_k::<$s, F16>(base, gp, rows, c, co),
                    _ => dx_k::<$s, BF16>(base, gp, rows, c, co),
                }
            };
        }
        match code {
            F32 => go!(F32),
            F16 => go!(F16),
            _ => go!(BF16),
        }
    }
}

/// # Safety
/// AVX-512F, POPCNT; `base` and `g` hold `rows * c` values, each of `co` `c`.
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn dx_k<const S: u8, const R: u8>(
    base: *const u8,
    g: *mut f32,
    rows: usize,
    c: usize,
    co: [*const f32; 3],
) -> (u64, u64) {
    let (mut nonzero, mut flushed) = (0u64, 0u64);
    for r in 0..rows {
        for v in (0..c).step_by(L) {
            let i = r * c + v;
            // SAFETY: i + 16 <= rows * c and v + 16 <= c.
            unsafe {
                let (a, b, k) = (
                    _mm512_loadu_ps(co[0].add(v)),
                    _mm512_loadu_ps(co[1].add(v)),
                    _mm512_loadu_ps(co[2].add(v)),
                );
                let gv = _mm512_loadu_ps(g.add(i));
                let o = _mm512_add_ps(
                    _mm512_add_ps(_mm512_mul_ps(a, gv), _mm512_mul_ps(b, load::<S>(base, i))),
                    k,
                );
                let rounded = round::<R>(o);
                if R != F32 {
                    let before = lanes::nonzero(o);
                    let gone = before & !lanes::nonzero(rounded);
                    nonzero += u64::from(before.count_ones());
                    flushed += u64::from(gone.count_ones());
                }
                _mm512_storeu_ps(g.add(i), rounded);
            }
        }
    }
    (nonzero, flushed)
}
