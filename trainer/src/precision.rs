//! Emulation of half-precision storage: values are computed in f32 and rounded to IEEE
//! half (or bfloat16) wherever a GPU would store a half tensor.

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::config::Precision;
use crate::parallel::Par;

/// The 16-bit storage format a precision mode rounds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfFormat {
    /// IEEE 754 binary16 (5 exponent bits, 10 mantissa bits).
    F16,
    /// bfloat16 (8 exponent bits, 7 mantissa bits).
    Bf16,
}

impl Precision {
    /// The format tensors are rounded to, `None` for fp32.
    pub fn half_format(self) -> Option<HalfFormat> {
        match self {
            Precision::Fp32 => None,
            Precision::Fp16 | Precision::Fp16Naive => Some(HalfFormat::F16),
            Precision::Bf16 => Some(HalfFormat::Bf16),
        }
    }

    /// Whether the weights themselves live in half (no f32 master copy).
    pub fn weights_in_half(self) -> bool {
        self == Precision::Fp16Naive
    }

    /// Bytes per gradient element exchanged by an all-reduce in this mode.
    pub fn grad_bytes(self) -> u64 {
        if self.half_format().is_some() {
            2
        } else {
            4
        }
    }
}

/// Block size of the f32 -> f16 -> f32 round trip (fits a stack buffer).
const BLOCK: usize = 512;

/// Rounds every value to the nearest IEEE half (ties to even; overflow -> ±inf; tiny -> subnormal/±0).
pub fn round_f16(x: &mut [f32]) {
    let mut buf = [f16::ZERO; BLOCK];
    for chunk in x.chunks_mut(BLOCK) {
        let h = &mut buf[..chunk.len()];
        // Slice conversions use F16C when the CPU has it: ~10x faster than per-value conversion.
        h.convert_from_f32_slice(chunk);
        h.convert_to_f32_slice(chunk);
    }
}

/// Rounds one value to the nearest bfloat16 (ties to even), keeping NaN a NaN.
#[inline]
pub fn bf16_round(v: f32) -> f32 {
    let b = v.to_bits();
    if b & 0x7FFF_FFFF > 0x7F80_0000 {
        return f32::from_bits((b | 0x0040_0000) & 0xFFFF_0000);
    }
    // Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to even; a carry into the
    // exponent is the correct rounding up (and saturates to inf at the top of the range).
    let r = b.wrapping_add(0x7FFF + ((b >> 16) & 1));
    f32::from_bits(r & 0xFFFF_0000)
}

/// Rounds every value to the nearest bfloat16.
pub fn round_bf16(x: &mut [f32]) {
    for v in x {
        *v = bf16_round(*v);
    }
}

/// Rounds `x` to `fmt` (no-op for `None`).
pub fn round(fmt: Option<HalfFormat>, x: &mut [f32]) {
    match fmt {
        None => {}
        Some(HalfFormat::F16) => round_f16(x),
        Some(HalfFormat::Bf16) => round_bf16(x),
    }
}

/// Rounds a large tensor using all compute threads.
pub fn round_par(par: &Par, fmt: Option<HalfFormat>, x: &mut [f32]) {
    if fmt.is_none() {
        return;
    }
    if x.len() < 1 << 16 || par.threads() == 1 {
        round(fmt, x);
        return;
    }
    let n = x.len();
    par.run_split(n, x, 1, |_, part| round(fmt, part));
}

/// Counts of gradient values flushed to zero by the cast to half.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Underflow {
    /// Values that were nonzero before rounding.
    pub nonzero: u64,
    /// Of those, values that became zero.
    pub flushed: u64,
}

impl Underflow {
    /// Adds another count.
    pub fn add(&mut self, o: Underflow) {
        self.nonzero += o.nonzero;
        self.flushed += o.flushed;
    }
    /// flushed / nonzero (0 when nothing was nonzero).
    pub fn fraction(&self) -> f64 {
        if self.nonzero == 0 {
            0.0
        } else {
            self.flushed as f64 / self.nonzero as f64
        }
    }
}

/// Rounds `x` to `fmt` and counts underflows.
pub fn round_counting(fmt: Option<HalfFormat>, x: &mut [f32]) -> Underflow {
    let Some(fmt) = fmt else {
        return Underflow::default();
    };
    let mut u = Underflow::default();
    for chunk in x.chunks_mut(BLOCK) {
        let nz_before = chunk.iter().filter(|v| **v != 0.0).count() as u64;
        round(Some(fmt), chunk);
        let nz_after = chunk.iter().filter(|v| **v != 0.0).count() as u64;
        u.nonzero += nz_before;
        u.flushed += nz_before - nz_after;
    }
    u
}

/// Parallel `round_counting` for large tensors.
pub fn round_counting_par(par: &Par, fmt: Option<HalfFormat>, x: &mut [f32]) -> Underflow {
    if fmt.is_none() {
        return Underflow::default();
    }
    if x.len() < 1 << 16 || par.threads() == 1 {
        return round_counting(fmt, x);
    }
    let n = x.len();
    let parts = par.run_split(n, x, 1, |_, part| round_counting(fmt, part));
    let mut u = Underflow::default();
    for p in parts {
        u.add(p);
    }
    u
}

/// True if every value is finite.
pub fn all_finite(x: &[f32]) -> bool {
    // Summing `v * 0` is 0 for finite values and NaN for inf/NaN; it vectorises, unlike an
    // early-exit loop.
    let mut acc = 0.0f32;
    for &v in x {
        acc += v * 0.0;
    }
    acc == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r16(v: f32) -> f32 {
        let mut x = [v];
        round_f16(&mut x);
        x[0]
    }

    #[test]
    fn f16_rounding_edge_cases() {
        assert_eq!(r16(65520.0), f32::INFINITY);
        assert_eq!(r16(-65520.0), f32::NEG_INFINITY);
        assert_eq!(r16(65504.0), 65504.0);
        assert_eq!(r16(1e-8), 0.0);
        let smallest = 2.0f32.powi(-24);
        assert_eq!(r16(6e-8), smallest);
        assert_eq!(r16(1.0 + 2.0f32.powi(-11)), 1.0); // tie -> even
        assert_eq!(r16(1.0 + 3.0 * 2.0f32.powi(-11)), 1.0 + 2.0f32.powi(-9)); // tie -> even (up)
        assert!(r16(f32::NAN).is_nan());
        // the slice path agrees with the scalar conversion on a sweep of magnitudes
        let vals: Vec<f32> = (0..2000)
            .map(|i| (i as f32 * 0.37).sin() * 10f32.powi(i % 14 - 9))
            .collect();
        let mut got = vals.clone();
        round_f16(&mut got);
        for (v, g) in vals.iter().zip(&got) {
            assert_eq!(f16::from_f32(*v).to_f32().to_bits(), g.to_bits());
        }
    }

    #[test]
    fn bf16_matches_half_crate() {
        let mut s = 0x1234_5678u32;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let v = f32::from_bits(s);
            let want = half::bf16::from_f32(v).to_f32();
            let got = bf16_round(v);
            assert!(
                want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
                "{v:e}"
            );
        }
        assert_eq!(bf16_round(f32::MAX), f32::INFINITY);
        assert_eq!(bf16_round(1.0 + 2.0f32.powi(-8)), 1.0);
    }

    #[test]
    fn underflow_is_counted() {
        let mut x = vec![1.0, 1e-9, 0.0, -1e-9, 3e-5, f32::INFINITY];
        let u = round_counting(Some(HalfFormat::F16), &mut x);
        assert_eq!(
            u,
            Underflow {
                nonzero: 5,
                flushed: 2
            }
        );
        assert!(!all_finite(&x));
        assert!(all_finite(&[1.0, -2.0, 0.0]));
        assert!(!all_finite(&[f32::NAN]));
    }
}
