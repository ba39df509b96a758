//! AVX-512 kernels for half-precision storage emulation: one pass over the buffer that rounds
//! 16 lanes at a time and (optionally) counts the values the rounding flushed to zero.
//!
//! Hand-written because no crate does this: conversion crates round f32 to f16/bf16 *storage*
//! (a second buffer), while the emulation needs f32 -> half -> f32 in place, fused with the
//! underflow count, at memory speed. The crate is built for baseline x86-64, so these functions
//! are compiled with `#[target_feature]` and only called after runtime detection
//! ([`available`]); every other CPU takes the portable path in the parent module.

use std::arch::x86_64::*;

/// Whether the CPU runs these kernels (AVX-512F for the lanes, POPCNT for the counts).
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("popcnt")
}

/// f32 -> IEEE half -> f32 in every lane: `vcvtps2ph` with round-to-nearest-even (the
/// instruction's immediate rounding, so MXCSR does not matter), overflow to ±inf, half
/// subnormals kept; `vcvtph2ps` back is exact.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn f16_lanes(v: __m512) -> __m512 {
    let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
    _mm512_cvtph_ps(h)
}

/// f32 -> bfloat16 -> f32 in every lane, with the integer rounding of
/// [`super::bf16_round`] (ties to even, NaN stays a quiet NaN, f32 subnormals kept).
/// `vcvtneps2bf16` is not used: it flushes subnormal inputs to zero, which bf16 storage on a
/// GPU does not.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn bf16_lanes(v: __m512) -> __m512 {
    let b = _mm512_castps_si512(v);
    let abs = _mm512_and_si512(b, _mm512_set1_epi32(0x7FFF_FFFF));
    let nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7F80_0000));
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
    let rounded = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
    let quiet = _mm512_or_si512(b, _mm512_set1_epi32(0x0040_0000));
    let r = _mm512_mask_blend_epi32(nan, rounded, quiet);
    _mm512_castsi512_ps(_mm512_and_si512(
        r,
        _mm512_set1_epi32(0xFFFF_0000u32 as i32),
    ))
}

/// Lanes that are not +-0 (NaN counts as nonzero, like `v != 0.0`).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn nonzero(v: __m512) -> u16 {
    _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, _mm512_setzero_ps())
}

/// Rounds `x` in place with `lanes`; with `COUNT`, returns (nonzero before, flushed to zero).
#[inline]
#[target_feature(enable = "avx512f,popcnt")]
fn round_with<const COUNT: bool>(x: &mut [f32], lanes: impl Fn(__m512) -> __m512) -> (u64, u64) {
    let (mut nz, mut flushed) = (0u64, 0u64);
    let mut chunks = x.chunks_exact_mut(16);
    for c in &mut chunks {
        let p = c.as_mut_ptr();
        // SAFETY: `c` is 16 valid, uniquely borrowed f32s; unaligned load/store.
        let v = unsafe { _mm512_loadu_ps(p) };
        let r = lanes(v);
        unsafe { _mm512_storeu_ps(p, r) };
        if COUNT {
            let before = nonzero(v);
            let gone = before & !nonzero(r);
            nz += u64::from(before.count_ones());
            flushed += u64::from(gone.count_ones());
        }
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let m: u16 = (1u32 << tail.len()).wrapping_sub(1) as u16;
        let p = tail.as_mut_ptr();
        // SAFETY: the mask covers exactly the `tail.len()` valid elements; masked-off lanes
        // are neither read nor written (and load as 0, so they count as zero).
        let v = unsafe { _mm512_maskz_loadu_ps(m, p) };
        let r = lanes(v);
        unsafe { _mm512_mask_storeu_ps(p, m, r) };
        if COUNT {
            let before = nonzero(v) & m;
            let gone = before & !nonzero(r);
            nz += u64::from(before.count_ones());
            flushed += u64::from(gone.count_ones());
        }
    }
    (nz, flushed)
}

/// Rounds `x` to IEEE half in place; with `COUNT`, returns (nonzero before, flushed).
///
/// # Safety
/// The CPU must support AVX-512F and POPCNT ([`available`]).
#[target_feature(enable = "avx512f,popcnt")]
pub unsafe fn round_f16<const COUNT: bool>(x: &mut [f32]) -> (u64, u64) {
    round_with::<COUNT>(x, |v| f16_lanes(v))
}

/// Rounds `x` to bfloat16 in place; with `COUNT`, returns (nonzero before, flushed).
///
/// # Safety
/// The CPU must support AVX-512F and POPCNT ([`available`]).
#[target_feature(enable = "avx512f,popcnt")]
pub unsafe fn round_bf16<const COUNT: bool>(x: &mut [f32]) -> (u64, u64) {
    round_with::<COUNT>(x, |v| bf16_lanes(v))
}

/// Runs `lanes` on 16 values at a time of `src` and `dst` (equal lengths), the last short group
/// through zero-padded stack buffers, so every value takes the same vector path.
#[inline]
#[target_feature(enable = "avx512f")]
fn by_16<S: Copy + Default, D: Copy + Default>(
    src: &[S],
    dst: &mut [D],
    lanes: impl Fn(*const S, *mut D),
) {
    assert_eq!(src.len(), dst.len(), "conversion: length mismatch");
    let mut s = src.chunks_exact(16);
    let mut d = dst.chunks_exact_mut(16);
    for (a, b) in (&mut s).zip(&mut d) {
        lanes(a.as_ptr(), b.as_mut_ptr());
    }
    let (st, dt) = (s.remainder(), d.into_remainder());
    if !st.is_empty() {
        let mut a = [S::default(); 16];
        let mut b = [D::default(); 16];
        a[..st.len()].copy_from_slice(st);
        lanes(a.as_ptr(), b.as_mut_ptr());
        dt.copy_from_slice(&b[..dt.len()]);
    }
}

/// Writes the IEEE half bit patterns of `src` (rounded as [`round_f16`] rounds) into `dst`.
///
/// # Safety
/// The CPU must support AVX-512F ([`available`]).
#[target_feature(enable = "avx512f")]
pub unsafe fn narrow_f16(src: &[f32], dst: &mut [u16]) {
    by_16(src, dst, |s, d| {
        // SAFETY: `by_16` passes pointers to 16 readable f32s and 16 writable u16s.
        unsafe {
            let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_loadu_ps(s),
            );
            _mm256_storeu_si256(d.cast(), h);
        }
    });
}

/// Writes the bfloat16 bit patterns of `src` (rounded as [`round_bf16`] rounds) into `dst`.
///
/// # Safety
/// The CPU must support AVX-512F ([`available`]).
#[target_feature(enable = "avx512f")]
pub unsafe fn narrow_bf16(src: &[f32], dst: &mut [u16]) {
    by_16(src, dst, |s, d| {
        // SAFETY: as in `narrow_f16`.
        unsafe {
            let r = _mm512_castps_si512(bf16_lanes(_mm512_loadu_ps(s)));
            let hi = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(r));
            _mm256_storeu_si256(d.cast(), hi);
        }
    });
}

/// Widens IEEE half bit patterns to f32 (exact).
///
/// # Safety
/// The CPU must support AVX-512F ([`available`]).
#[target_feature(enable = "avx512f")]
pub unsafe fn widen_f16(src: &[u16], dst: &mut [f32]) {
    by_16(src, dst, |s, d| {
        // SAFETY: `by_16` passes pointers to 16 readable u16s and 16 writable f32s.
        unsafe { _mm512_storeu_ps(d, _mm512_cvtph_ps(_mm256_loadu_si256(s.cast()))) }
    });
}

/// Widens bfloat16 bit patterns to f32 (exact: the pattern becomes the top half).
///
/// # Safety
/// The CPU must support AVX-512F ([`available`]).
#[target_feature(enable = "avx512f")]
pub unsafe fn widen_bf16(src: &[u16], dst: &mut [f32]) {
    by_16(src, dst, |s, d| {
        // SAFETY: as in `widen_f16`.
        unsafe {
            let w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(s.cast()));
            _mm512_storeu_ps(d, _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w)));
        }
    });
}
