//! Emulation of half-precision storage: values are computed in f32 and rounded to IEEE
//! half (or bfloat16) wherever a GPU would store a half tensor.
//!
//! Rounding (and counting the gradient values it flushes to zero) is one pass over the buffer:
//! 16 lanes at a time with AVX-512 where the CPU has it (detected at run time, `x86`), else a
//! portable path; both give the same bits. Layers call it on each piece of output right after
//! computing it, while it is still in cache. The activations a layer keeps for its backward
//! pass are stored at 16 bits in the half modes ([`Stored`]: [`narrow`] to store, [`widen`] to
//! read, exact), so the passes that re-read them move half the bytes of f32.

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

/// Block size of the portable f32 -> f16 -> f32 round trip (fits a stack buffer).
const BLOCK: usize = 512;

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

pub mod stored;
pub use stored::{Stored, View, ViewMut};

/// Whether the AVX-512 kernels run on this CPU (detected once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn simd() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(x86::available)
}

/// Rounds `x` in place to `fmt` in one pass; with `COUNT`, returns (nonzero before, flushed).
fn round_pass<const COUNT: bool>(fmt: HalfFormat, x: &mut [f32]) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: `simd()` checked the CPU features the kernels are compiled for.
        return unsafe {
            match fmt {
                HalfFormat::F16 => x86::round_f16::<COUNT>(x),
                HalfFormat::Bf16 => x86::round_bf16::<COUNT>(x),
            }
        };
    }
    portable::round_pass::<COUNT>(fmt, x)
}

/// Writes the `fmt` bit patterns of `src`, rounded exactly as [`round`] rounds, into `dst`.
pub fn narrow(fmt: HalfFormat, src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "narrow: length mismatch");
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: `simd()` checked the CPU features the kernels are compiled for.
        unsafe {
            match fmt {
                HalfFormat::F16 => x86::narrow_f16(src, dst),
                HalfFormat::Bf16 => x86::narrow_bf16(src, dst),
            }
        }
        return;
    }
    portable::narrow(fmt, src, dst)
}

/// Widens `fmt` bit patterns to f32 (exact).
pub fn widen(fmt: HalfFormat, src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen: length mismatch");
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: as in `narrow`.
        unsafe {
            match fmt {
                HalfFormat::F16 => x86::widen_f16(src, dst),
                HalfFormat::Bf16 => x86::widen_bf16(src, dst),
            }
        }
        return;
    }
    portable::widen(fmt, src, dst)
}

/// The path for CPUs without AVX-512 (and the reference the kernels are tested against).
mod portable {
    use super::{bf16_round, HalfFormat, BLOCK};
    use half::f16;
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

    pub(super) fn narrow(fmt: HalfFormat, src: &[f32], dst: &mut [u16]) {
        match fmt {
            HalfFormat::F16 => dst
                .reinterpret_cast_mut::<f16>()
                .convert_from_f32_slice(src),
            HalfFormat::Bf16 => {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = (bf16_round(v).to_bits() >> 16) as u16;
                }
            }
        }
    }

    pub(super) fn widen(fmt: HalfFormat, src: &[u16], dst: &mut [f32]) {
        match fmt {
            HalfFormat::F16 => src.reinterpret_cast::<f16>().convert_to_f32_slice(dst),
            HalfFormat::Bf16 => {
                for (d, &b) in dst.iter_mut().zip(src) {
                    *d = f32::from_bits(u32::from(b) << 16);
                }
            }
        }
    }

    fn nonzero(x: &[f32]) -> u64 {
        x.iter().filter(|v| **v != 0.0).count() as u64
    }

    /// Rounds in blocks that stay in L1, counting each block before and after.
    pub(super) fn round_pass<const COUNT: bool>(fmt: HalfFormat, x: &mut [f32]) -> (u64, u64) {
        let (mut nz, mut flushed) = (0, 0);
        let mut buf = [f16::ZERO; BLOCK];
        for chunk in x.chunks_mut(BLOCK) {
            let before = if COUNT { nonzero(chunk) } else { 0 };
            match fmt {
                HalfFormat::F16 => {
                    let h = &mut buf[..chunk.len()];
                    // Slice conversions use F16C when the CPU has it: ~10x faster than per-value.
                    h.convert_from_f32_slice(chunk);
                    h.convert_to_f32_slice(chunk);
                }
                HalfFormat::Bf16 => chunk.iter_mut().for_each(|v| *v = bf16_round(*v)),
            }
            if COUNT {
                nz += before;
                flushed += before - nonzero(chunk);
            }
        }
        (nz, flushed)
    }
}

/// Rounds every value to the nearest IEEE half (ties to even; overflow -> ±inf; tiny -> subnormal/±0).
pub fn round_f16(x: &mut [f32]) {
    round_pass::<false>(HalfFormat::F16, x);
}

/// Rounds one value to the nearest bfloat16 (ties to even), keeping NaN a NaN.
#[inline]
pub fn bf16_round(v: f32) -> f32 {
    let b = v.to_bits();
    // Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to even; a carry into the
    // exponent is the correct rounding up (and saturates to inf at the top of the range).
    let r = b.wrapping_add(0x7FFF + ((b >> 16) & 1));
    // NaN keeps its sign and top payload, made quiet; a select (not a branch) so loops vectorise.
    let nan = (b | 0x0040_0000) & 0xFFFF_0000;
    let r = if b & 0x7FFF_FFFF > 0x7F80_0000 {
        nan
    } else {
        r & 0xFFFF_0000
    };
    f32::from_bits(r)
}

/// Rounds every value to the nearest bfloat16.
pub fn round_bf16(x: &mut [f32]) {
    round_pass::<false>(HalfFormat::Bf16, x);
}

/// Rounds `x` to `fmt` (no-op for `None`).
pub fn round(fmt: Option<HalfFormat>, x: &mut [f32]) {
    if let Some(f) = fmt {
        round_pass::<false>(f, x);
    }
}

/// Copies `src` into `dst` (cleared first) rounded to `fmt`.
pub fn round_into(fmt: Option<HalfFormat>, src: &[f32], dst: &mut Vec<f32>) {
    dst.clear();
    dst.extend_from_slice(src);
    round(fmt, dst);
}

/// Values below which one thread rounds a tensor: a vector pass over 256K values takes about
/// as long as starting the other threads.
const PAR_MIN: usize = 1 << 18;

/// Rounds a large tensor using all compute threads.
pub fn round_par(par: &Par, fmt: Option<HalfFormat>, x: &mut [f32]) {
    if fmt.is_none() {
        return;
    }
    if x.len() < PAR_MIN || par.threads() == 1 {
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
    let (nonzero, flushed) = round_pass::<true>(fmt, x);
    Underflow { nonzero, flushed }
}

/// Parallel `round_counting` for large tensors.
pub fn round_counting_par(par: &Par, fmt: Option<HalfFormat>, x: &mut [f32]) -> Underflow {
    if fmt.is_none() {
        return Underflow::default();
    }
    if x.len() < PAR_MIN || par.threads() == 1 {
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
    use half::{bf16, f16};

    /// Software conversions of the `half` crate (no F16C): the independent reference.
    fn reference(fmt: HalfFormat, v: f32) -> f32 {
        match fmt {
            HalfFormat::F16 => f16::from_f32_const(v).to_f32_const(),
            HalfFormat::Bf16 => bf16::from_f32_const(v).to_f32_const(),
        }
    }

    /// Values at every boundary of both formats, both signs.
    fn edge_values() -> Vec<f32> {
        let p = |e: i32| 2.0f32.powi(e);
        let mut v = vec![
            0.0,
            f32::MIN_POSITIVE,
            f32::MIN_POSITIVE / 2.0,
            f32::from_bits(1),
            f32::from_bits(0x007F_FFFF),
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
            f32::from_bits(0x7F80_0001), // signalling NaN
            f32::from_bits(0x7FFF_FFFF),
            1.0,
            65504.0,
            65519.996,
            65520.0,
            p(-24),
            p(-25),
            p(-25) * 1.0001,
            3.0 * p(-25),
            p(-14),
            p(-14) - p(-24),
            p(-14) - p(-25),
            1.0 + p(-11),
            1.0 + 3.0 * p(-11),
            1.0 + p(-8),
            1.0 + 3.0 * p(-8),
            1.0 + p(-8) + p(-20),
            f32::from_bits(0x7F7F_8000), // bf16 tie at the top -> inf
            f32::from_bits(0x7F7F_7FFF),
            f32::from_bits(0x0000_8000), // bf16 subnormal tie
            f32::from_bits(0x0001_8000),
        ];
        let neg: Vec<f32> = v.iter().map(|x| -x).collect();
        v.extend(neg);
        v
    }

    fn xorshift(len: usize, mut s: u32) -> Vec<f32> {
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                f32::from_bits(s)
            })
            .collect()
    }

    /// Both the dispatched (AVX-512 where present) and the portable pass equal the reference
    /// bit for bit, and count exactly the values the reference flushes.
    fn check_against_reference(fmt: HalfFormat, vals: &[f32]) {
        let want: Vec<f32> = vals.iter().map(|&v| reference(fmt, v)).collect();
        let nonzero = vals.iter().filter(|v| **v != 0.0).count() as u64;
        let flushed = vals
            .iter()
            .zip(&want)
            .filter(|(v, w)| **v != 0.0 && **w == 0.0)
            .count() as u64;
        let mut fast = vals.to_vec();
        let mut slow = vals.to_vec();
        let mut plain = vals.to_vec();
        assert_eq!(round_pass::<true>(fmt, &mut fast), (nonzero, flushed));
        assert_eq!(
            portable::round_pass::<true>(fmt, &mut slow),
            (nonzero, flushed)
        );
        round(Some(fmt), &mut plain);
        // half storage: narrowing then widening gives the rounded value, on both paths
        let (mut bits, mut bits_slow) = (vec![0u16; vals.len()], vec![0u16; vals.len()]);
        narrow(fmt, vals, &mut bits);
        portable::narrow(fmt, vals, &mut bits_slow);
        assert_eq!(bits, bits_slow, "{fmt:?} narrowed bits");
        let (mut stored, mut stored_slow) = (vec![0.0; vals.len()], vec![0.0; vals.len()]);
        widen(fmt, &bits, &mut stored);
        portable::widen(fmt, &bits, &mut stored_slow);
        for (i, w) in want.iter().enumerate() {
            for (path, got) in [
                ("dispatched", fast[i]),
                ("portable", slow[i]),
                ("uncounted", plain[i]),
                ("stored", stored[i]),
                ("stored portable", stored_slow[i]),
            ] {
                assert_eq!(
                    got.to_bits(),
                    w.to_bits(),
                    "{fmt:?} {path} {:e} ({:#010x})",
                    vals[i],
                    vals[i].to_bits()
                );
            }
        }
    }

    #[test]
    fn vectorised_rounding_matches_reference_on_edge_values() {
        for fmt in [HalfFormat::F16, HalfFormat::Bf16] {
            check_against_reference(fmt, &edge_values());
        }
    }

    #[test]
    fn vectorised_rounding_matches_reference_on_random_bits_and_tails() {
        for fmt in [HalfFormat::F16, HalfFormat::Bf16] {
            check_against_reference(fmt, &xorshift(300_000, 0x9E37_79B9));
            // magnitudes around the half underflow threshold, where flushes happen
            let small: Vec<f32> = xorshift(20_000, 7)
                .iter()
                .map(|v| (v.to_bits() % 1000) as f32 * 1e-10 - 5e-8)
                .collect();
            check_against_reference(fmt, &small);
            // every length up to a few vectors, at unaligned starts: the masked tails
            let base = xorshift(200, 3);
            for start in 0..4 {
                for len in 0..70 {
                    check_against_reference(fmt, &base[start..start + len]);
                }
            }
        }
    }

    #[test]
    fn parallel_rounding_counts_like_serial() {
        let par = Par::new(3);
        // small normals (f16 flushes some) and f32 subnormals (bf16 flushes some)
        let vals: Vec<f32> = xorshift(PAR_MIN * 2 + 1, 11)
            .iter()
            .map(|v| match v.to_bits() % 3 {
                0 => f32::from_bits(v.to_bits() % 0x0002_0000),
                _ => v.to_bits() as f32 * 1e-16,
            })
            .collect();
        for fmt in [HalfFormat::F16, HalfFormat::Bf16] {
            let (mut a, mut b) = (vals.clone(), vals.clone());
            let ua = round_counting(Some(fmt), &mut a);
            let ub = round_counting_par(&par, Some(fmt), &mut b);
            assert_eq!(ua, ub);
            assert!(ua.flushed > 0 && ua.flushed < ua.nonzero);
            assert_eq!(a, b);
            let mut c = vals.clone();
            round_par(&par, Some(fmt), &mut c);
            assert_eq!(a, c);
        }
    }

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
