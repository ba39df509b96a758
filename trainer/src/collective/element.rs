//! Element types a collective sums, and how one hop adds them: in f32, rounded back to the
//! element type (as a GPU ring does), so half sums overflow to ±inf where a GPU's would.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// Elements summed at a time by the half types (f32 staging buffers stay in L1).
const BLOCK: usize = 256;

/// An element type of a [`super::Payload`].
pub(crate) trait Element: Copy + Send + Sync + 'static {
    /// The type's name in messages.
    const NAME: &'static str;

    /// `dst[i] = round(dst[i] + src[i])` for every `i`; the slices have the same length.
    fn accumulate(dst: &mut [Self], src: &[Self]);

    /// `values[i] = round(values[i] / divisor)` for every `i`.
    fn divide(values: &mut [Self], divisor: f32);
}

impl Element for f32 {
    const NAME: &'static str = "f32";

    fn accumulate(dst: &mut [f32], src: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if simd::available() {
            // SAFETY: the CPU has AVX-512F (checked above); the slices have the same length.
            return unsafe { simd::accumulate_f32(dst, src) };
        }
        portable_accumulate_f32(dst, src);
    }

    fn divide(values: &mut [f32], divisor: f32) {
        values.iter_mut().for_each(|v| *v /= divisor);
    }
}

fn portable_accumulate_f32(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += *s;
    }
}

/// Half types: staged through f32 a block at a time, added, rounded back. With AVX-512 the
/// whole hop runs in 512-bit registers instead (`simd`), with the same result bit for bit.
macro_rules! staged_half {
    ($t:ty, $name:literal, $simd:ident, $portable:ident) => {
        impl Element for $t {
            const NAME: &'static str = $name;

            fn accumulate(dst: &mut [$t], src: &[$t]) {
                #[cfg(target_arch = "x86_64")]
                if simd::available() {
                    // SAFETY: the CPU has AVX-512F (checked above); same lengths.
                    return unsafe { simd::$simd(dst, src) };
                }
                $portable(dst, src);
            }

            fn divide(values: &mut [$t], divisor: f32) {
                let mut a = [0f32; BLOCK];
                for d in values.chunks_mut(BLOCK) {
                    let n = d.len();
                    d.convert_to_f32_slice(&mut a[..n]);
                    a[..n].iter_mut().for_each(|v| *v /= divisor);
                    d.convert_from_f32_slice(&a[..n]);
                }
            }
        }

        /// The portable hop: through f32 staging blocks and the `half` crate's conversions.
        fn $portable(dst: &mut [$t], src: &[$t]) {
            let mut a = [0f32; BLOCK];
            let mut b = [0f32; BLOCK];
            for (d, s) in dst.chunks_mut(BLOCK).zip(src.chunks(BLOCK)) {
                let n = d.len();
                d.convert_to_f32_slice(&mut a[..n]);
                s.convert_to_f32_slice(&mut b[..n]);
                for (x, y) in a[..n].iter_mut().zip(&b[..n]) {
                    *x += *y;
                }
                d.convert_from_f32_slice(&a[..n]);
            }
        }
    };
}

staged_half!(f16, "f16", accumulate_f16, portable_accumulate_f16);
staged_half!(bf16, "bf16", accumulate_bf16, portable_accumulate_bf16);

/// AVX-512 hops. Hand-written because the sum of two half buffers has to be rounded exactly
/// as the portable path rounds it, and no maintained crate offers a fused
/// convert-add-round-store over half slices: staging through the `half` crate's slice
/// conversions costs three passes over L1 and its bf16 conversion has no vector path.
#[cfg(target_arch = "x86_64")]
mod simd {
    use half::{bf16, f16};
    use std::arch::x86_64::*;

    /// Whether the CPU runs these kernels (checked once; the answer is cached by std).
    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// Lanes per 512-bit register of f32.
    const LANES: usize = 16;

    /// # Safety
    /// The CPU has AVX-512F; `dst.len() == src.len()`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn accumulate_f32(dst: &mut [f32], src: &[f32]) {
        let body = dst.len() / LANES * LANES;
        for i in (0..body).step_by(LANES) {
            // SAFETY: i + 16 <= len for both slices.
            unsafe {
                let a = _mm512_loadu_ps(dst.as_ptr().add(i));
                let b = _mm512_loadu_ps(src.as_ptr().add(i));
                _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_add_ps(a, b));
            }
        }
        super::portable_accumulate_f32(&mut dst[body..], &src[body..]);
    }

    /// # Safety
    /// The CPU has AVX-512F; `dst.len() == src.len()`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn accumulate_f16(dst: &mut [f16], src: &[f16]) {
        let body = dst.len() / LANES * LANES;
        for i in (0..body).step_by(LANES) {
            // SAFETY: i + 16 <= len; f16 is 16 bits, so 16 of them are one 256-bit load.
            unsafe {
                let a = _mm512_cvtph_ps(_mm256_loadu_si256(dst.as_ptr().add(i).cast()));
                let b = _mm512_cvtph_ps(_mm256_loadu_si256(src.as_ptr().add(i).cast()));
                // Round to nearest even, as the portable conversion does (subnormals kept).
                let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm512_add_ps(a, b),
                );
                _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), h);
            }
        }
        super::portable_accumulate_f16(&mut dst[body..], &src[body..]);
    }

    /// # Safety
    /// The CPU has AVX-512F; `dst.len() == src.len()`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn accumulate_bf16(dst: &mut [bf16], src: &[bf16]) {
        // Integer rounding rather than AVX512_BF16's VCVTNEPS2BF16, which flushes subnormals:
        // round to nearest even by adding 0x7FFF plus the lowest kept bit, NaNs made quiet.
        let widen = |p: *const bf16| {
            // SAFETY: the caller reads 16 elements that are in bounds.
            let h = unsafe { _mm256_loadu_si256(p.cast()) };
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        };
        let abs_mask = _mm512_set1_epi32(0x7FFF_FFFF);
        let inf = _mm512_set1_epi32(0x7F80_0000);
        let quiet = _mm512_set1_epi32(0x0040_0000);
        let half_ulp = _mm512_set1_epi32(0x7FFF);
        let one = _mm512_set1_epi32(1);
        let body = dst.len() / LANES * LANES;
        for i in (0..body).step_by(LANES) {
            // SAFETY: i + 16 <= len for both slices.
            unsafe {
                let sum = _mm512_add_ps(widen(dst.as_ptr().add(i)), widen(src.as_ptr().add(i)));
                let bits = _mm512_castps_si512(sum);
                let nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(bits, abs_mask), inf);
                let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), one);
                let rounded = _mm512_add_epi32(bits, _mm512_add_epi32(half_ulp, lsb));
                let out = _mm512_mask_or_epi32(rounded, nan, bits, quiet);
                let h = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(out));
                _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), h);
            }
        }
        super::portable_accumulate_bf16(&mut dst[body..], &src[body..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values every rounding path must agree on: signed zeros, subnormals of both formats,
    /// ties, the largest finite values, infinities and NaNs, and a spread of ordinary values.
    fn edge_values() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            65504.0,
            -65504.0,
            65519.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            5.96e-8,
            2.98e-8,
            1e-45,
            3.0e-39,
            1.0 + f16::EPSILON.to_f32() / 2.0,
            257.0,
            255.5,
        ];
        let mut x: u32 = 0x1234_5678;
        for _ in 0..3000 {
            // xorshift: bit patterns across every exponent.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let f = f32::from_bits(x);
            v.push(if f.is_nan() { 0.5 } else { f });
        }
        v
    }

    #[test]
    fn vector_hops_equal_the_portable_hops_bit_for_bit() {
        let vals = edge_values();
        // Lengths around the vector width: the tail must take the same path's results too.
        for len in [0, 1, 15, 16, 17, 33, vals.len() / 2] {
            let a: Vec<f32> = vals.iter().copied().cycle().take(len).collect();
            let b: Vec<f32> = vals.iter().rev().copied().cycle().take(len).collect();

            let (mut fast, mut slow) = (a.clone(), a.clone());
            f32::accumulate(&mut fast, &b);
            portable_accumulate_f32(&mut slow, &b);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&slow), "f32, length {len}");

            let ha: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
            let hb: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
            let (mut fast, mut slow) = (ha.clone(), ha.clone());
            f16::accumulate(&mut fast, &hb);
            portable_accumulate_f16(&mut slow, &hb);
            let bits = |v: &[f16]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&slow), "f16, length {len}");

            let ba: Vec<bf16> = a.iter().map(|&x| bf16::from_f32(x)).collect();
            let bb: Vec<bf16> = b.iter().map(|&x| bf16::from_f32(x)).collect();
            let (mut fast, mut slow) = (ba.clone(), ba.clone());
            bf16::accumulate(&mut fast, &bb);
            portable_accumulate_bf16(&mut slow, &bb);
            let bits = |v: &[bf16]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&slow), "bf16, length {len}");
        }
    }

    #[test]
    fn half_hops_round_to_the_payload_type_and_overflow_to_inf() {
        let mut d = vec![
            f16::from_f32(60000.0),
            f16::from_f32(1.0),
            f16::from_f32(-60000.0),
        ];
        let s = vec![
            f16::from_f32(10000.0),
            f16::from_f32(f16::EPSILON.to_f32() / 4.0),
            f16::from_f32(-10000.0),
        ];
        f16::accumulate(&mut d, &s);
        assert_eq!(d[0], f16::INFINITY);
        assert_eq!(d[1], f16::ONE, "a quarter ulp is rounded away");
        assert_eq!(d[2], f16::NEG_INFINITY);
        let mut b = vec![bf16::from_f32(256.0); 3 * BLOCK + 1];
        bf16::accumulate(&mut b, &vec![bf16::ONE; 3 * BLOCK + 1]);
        assert!(
            b.iter().all(|&v| v == bf16::from_f32(256.0)),
            "257 is not a bf16: ties to even"
        );
    }

    #[test]
    fn divide_rounds_each_element() {
        let mut v = vec![f16::from_f32(3.0); 5];
        f16::divide(&mut v, 3.0);
        assert!(v.iter().all(|&x| x == f16::ONE));
        let mut w = vec![7.0f32, -2.0];
        f32::divide(&mut w, 2.0);
        assert_eq!(w, vec![3.5, -1.0]);
    }
}
