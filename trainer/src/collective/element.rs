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
        for (d, s) in dst.iter_mut().zip(src) {
            *d += *s;
        }
    }

    fn divide(values: &mut [f32], divisor: f32) {
        values.iter_mut().for_each(|v| *v /= divisor);
    }
}

/// Half types: staged through f32 a block at a time, added, rounded back.
macro_rules! staged_half {
    ($t:ty, $name:literal) => {
        impl Element for $t {
            const NAME: &'static str = $name;

            fn accumulate(dst: &mut [$t], src: &[$t]) {
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
    };
}

staged_half!(f16, "f16");
staged_half!(bf16, "bf16");

#[cfg(test)]
mod tests {
    use super::*;

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
