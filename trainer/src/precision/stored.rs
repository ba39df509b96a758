//! Activations kept for the backward pass in the precision's own storage format: f32 in fp32,
//! 16-bit bit patterns in the half modes, as a GPU keeps them. The half modes then move half the
//! bytes each time a pass re-reads such a tensor, which is where they save time over f32.
//!
//! Values are identical either way: a half tensor holds exactly the values the f32 emulation
//! rounds to, and widening them back is exact.

use std::ops::Range;

use super::{narrow, round, widen, HalfFormat};
use crate::parallel::split_mut;

/// A tensor kept between forward and backward, stored as its precision stores it.
#[derive(Debug, Clone)]
pub enum Stored {
    /// f32 values (fp32).
    F32(Vec<f32>),
    /// Bit patterns of IEEE half or bfloat16 values.
    Half(HalfFormat, Vec<u16>),
}

impl Default for Stored {
    fn default() -> Self {
        Stored::F32(Vec::new())
    }
}

impl Stored {
    /// Makes room for `len` values in the format of `fmt` (f32 for `None`), keeping the
    /// allocation when the format is unchanged; contents are unspecified until written.
    pub fn resize(&mut self, fmt: Option<HalfFormat>, len: usize) {
        match (fmt, &mut *self) {
            (None, Stored::F32(v)) => v.resize(len, 0.0),
            (Some(f), Stored::Half(g, v)) if f == *g => v.resize(len, 0),
            (None, _) => *self = Stored::F32(vec![0.0; len]),
            (Some(f), _) => *self = Stored::Half(f, vec![0; len]),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Read access.
    pub fn view(&self) -> View<'_> {
        match self {
            Stored::F32(v) => View::F32(v),
            Stored::Half(f, v) => View::Half(*f, v),
        }
    }

    /// Write access.
    pub fn view_mut(&mut self) -> ViewMut<'_> {
        match self {
            Stored::F32(v) => ViewMut::F32(v),
            Stored::Half(f, v) => ViewMut::Half(*f, v),
        }
    }

    /// The values widened to f32 (a copy).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut buf = Vec::new();
        self.view().f32s(0..self.len(), &mut buf).to_vec()
    }
}

/// Read-only values in f32 or a half format.
#[derive(Debug, Clone, Copy)]
pub enum View<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// Half or bfloat16 bit patterns.
    Half(HalfFormat, &'a [u16]),
}

impl<'a> From<&'a [f32]> for View<'a> {
    fn from(x: &'a [f32]) -> Self {
        View::F32(x)
    }
}

impl<'a> From<&'a Vec<f32>> for View<'a> {
    fn from(x: &'a Vec<f32>) -> Self {
        View::F32(x)
    }
}

impl<'a> View<'a> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            View::F32(v) => v.len(),
            View::Half(_, v) => v.len(),
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values in `range`.
    pub fn slice(self, range: Range<usize>) -> View<'a> {
        match self {
            View::F32(v) => View::F32(&v[range]),
            View::Half(f, v) => View::Half(f, &v[range]),
        }
    }

    /// Writes the values of `range` into `dst` as f32.
    pub fn copy_to(self, range: Range<usize>, dst: &mut [f32]) {
        match self {
            View::F32(v) => dst.copy_from_slice(&v[range]),
            View::Half(f, v) => widen(f, &v[range], dst),
        }
    }

    /// The half format of the storage (`None` for f32).
    pub fn format(&self) -> Option<HalfFormat> {
        match self {
            View::F32(_) => None,
            View::Half(f, _) => Some(*f),
        }
    }

    /// The values of `range` as f32: borrowed in f32, widened into `buf` in a half format.
    pub fn f32s<'b>(self, range: Range<usize>, buf: &'b mut Vec<f32>) -> &'b [f32]
    where
        'a: 'b,
    {
        match self {
            View::F32(v) => &v[range],
            View::Half(..) => {
                buf.resize(range.len(), 0.0);
                self.copy_to(range, buf);
                buf
            }
        }
    }

    /// Calls `f` on consecutive blocks of `block` values (the last may be shorter), as f32.
    pub fn for_each_block(self, block: usize, mut f: impl FnMut(&[f32])) {
        let mut buf = Vec::new();
        let n = self.len();
        let mut start = 0;
        while start < n {
            let end = (start + block).min(n);
            f(self.f32s(start..end, &mut buf));
            start = end;
        }
    }
}

/// Writable values in f32 or a half format.
#[derive(Debug)]
pub enum ViewMut<'a> {
    /// f32 values.
    F32(&'a mut [f32]),
    /// Half or bfloat16 bit patterns.
    Half(HalfFormat, &'a mut [u16]),
}

impl<'a> From<&'a mut [f32]> for ViewMut<'a> {
    fn from(x: &'a mut [f32]) -> Self {
        ViewMut::F32(x)
    }
}

impl<'a> ViewMut<'a> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            ViewMut::F32(v) => v.len(),
            ViewMut::Half(_, v) => v.len(),
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The half format of the storage (`None` for f32).
    pub fn format(&self) -> Option<HalfFormat> {
        match self {
            ViewMut::F32(_) => None,
            ViewMut::Half(f, _) => Some(*f),
        }
    }

    /// Cuts the values into consecutive pieces of `range.len() * stride` (see
    /// [`split_mut`]), one per thread range.
    pub fn split(self, ranges: &[Range<usize>], stride: usize) -> Vec<ViewMut<'a>> {
        match self {
            ViewMut::F32(v) => split_mut(v, ranges, stride)
                .into_iter()
                .map(ViewMut::F32)
                .collect(),
            ViewMut::Half(f, v) => split_mut(v, ranges, stride)
                .into_iter()
                .map(|p| ViewMut::Half(f, p))
                .collect(),
        }
    }

    /// Lets `fill` write the values of `range` in f32 and stores them rounded: in place to
    /// `fmt` when the storage is f32 (the emulation), narrowed to the storage's half format
    /// otherwise (through `scratch`, which should stay in cache).
    pub fn fill(
        &mut self,
        range: Range<usize>,
        fmt: Option<HalfFormat>,
        scratch: &mut Vec<f32>,
        fill: impl FnOnce(&mut [f32]),
    ) {
        match self {
            ViewMut::F32(v) => {
                let out = &mut v[range];
                fill(out);
                round(fmt, out);
            }
            ViewMut::Half(f, v) => {
                // half storage rounds to its own format: a caller asking for another is a bug
                assert_eq!(fmt, Some(*f), "rounding format differs from the storage's");
                scratch.resize(range.len(), 0.0);
                fill(scratch);
                narrow(*f, scratch, &mut v[range]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32) * 0.731).sin() * 10f32.powi(i as i32 % 12 - 8))
            .collect()
    }

    #[test]
    fn half_storage_holds_exactly_the_rounded_values() {
        let x = values(1000);
        for fmt in [HalfFormat::F16, HalfFormat::Bf16] {
            let mut want = x.clone();
            round(Some(fmt), &mut want);
            let mut s = Stored::default();
            s.resize(Some(fmt), x.len());
            assert!(matches!(s, Stored::Half(..)));
            let mut scratch = Vec::new();
            let mut v = s.view_mut();
            v.fill(0..600, Some(fmt), &mut scratch, |o| {
                o.copy_from_slice(&x[..600])
            });
            v.fill(600..1000, Some(fmt), &mut scratch, |o| {
                o.copy_from_slice(&x[600..])
            });
            let got = s.to_f32();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{fmt:?}");
            // blocks see the same values, the last one short
            let mut seen = Vec::new();
            let mut sizes = Vec::new();
            s.view().for_each_block(300, |b| {
                sizes.push(b.len());
                seen.extend_from_slice(b);
            });
            assert_eq!(sizes, vec![300, 300, 300, 100]);
            assert_eq!(bits(&seen), bits(&want));
        }
    }

    #[test]
    fn f32_storage_rounds_in_place_and_lends_its_values() {
        let x = values(50);
        let mut s = Stored::default();
        s.resize(None, 50);
        let mut scratch = Vec::new();
        s.view_mut()
            .fill(0..50, Some(HalfFormat::F16), &mut scratch, |o| {
                o.copy_from_slice(&x)
            });
        let mut want = x.clone();
        round(Some(HalfFormat::F16), &mut want);
        assert_eq!(s.to_f32(), want);
        assert!(scratch.is_empty(), "f32 storage is written directly");
        // reading f32 storage borrows it: nothing is copied into the buffer
        let mut buf = Vec::new();
        let Stored::F32(inner) = &s else {
            panic!("f32 storage expected")
        };
        let got = s.view().f32s(10..20, &mut buf).as_ptr();
        assert_eq!(got, inner[10..].as_ptr());
        assert!(buf.is_empty());
    }

    #[test]
    fn resizing_switches_format_and_splits_follow_ranges() {
        let mut s = Stored::default();
        s.resize(Some(HalfFormat::Bf16), 10);
        assert_eq!(s.len(), 10);
        s.resize(None, 4);
        assert!(matches!(s, Stored::F32(ref v) if v.len() == 4));
        s.resize(Some(HalfFormat::F16), 12);
        let parts = s.view_mut().split(&[0..1, 1..3], 4);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![4, 8]
        );
    }
}
