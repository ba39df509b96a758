//! Training-time augmentation: a random crop of the image padded by `PAD` pixels of background,
//! and a random horizontal flip — the usual small-image recipe.

use rand::Rng;

use super::SIDE;

/// Padding (pixels of background on every side) before the random crop.
pub const PAD: i32 = 2;

/// One image's random choices: crop offset in `-PAD..=PAD` on each axis, and whether to flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Horizontal shift.
    pub dx: i32,
    /// Vertical shift.
    pub dy: i32,
    /// Mirror left to right.
    pub flip: bool,
}

impl Choice {
    /// Draws a choice.
    pub fn draw(rng: &mut impl Rng) -> Choice {
        Choice {
            dx: rng.random_range(-PAD..=PAD),
            dy: rng.random_range(-PAD..=PAD),
            flip: rng.random(),
        }
    }
}

/// Writes the augmented, normalised image: output pixel (y, x) is source pixel
/// (y + dy, x' + dx) with x' = x or its mirror, and background (byte 0) outside the source.
pub fn apply(src: &[u8], dst: &mut [f32], table: &[f32; 256], c: Choice) {
    let side = SIDE as i32;
    for y in 0..side {
        for x in 0..side {
            let xs = if c.flip { side - 1 - x } else { x } + c.dx;
            let ys = y + c.dy;
            let inside = (0..side).contains(&xs) && (0..side).contains(&ys);
            let byte = if inside {
                src[(ys * side + xs) as usize]
            } else {
                0
            };
            dst[(y * side + x) as usize] = table[byte as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{normalisation_table, PIXELS};

    #[test]
    fn identity_shift_and_flip_move_pixels_where_expected() {
        let table = normalisation_table();
        let src: Vec<u8> = (0..PIXELS).map(|i| (i % 251) as u8 + 1).collect();
        let mut out = vec![0.0; PIXELS];
        apply(
            &src,
            &mut out,
            &table,
            Choice {
                dx: 0,
                dy: 0,
                flip: false,
            },
        );
        assert!(out.iter().zip(&src).all(|(&o, &s)| o == table[s as usize]));
        // shifted right by one: column 27 of the output shows column 28 (outside) = background
        apply(
            &src,
            &mut out,
            &table,
            Choice {
                dx: 1,
                dy: 0,
                flip: false,
            },
        );
        assert_eq!(out[27], table[0]);
        assert_eq!(out[0], table[src[1] as usize]);
        // mirrored: output (0, 0) is source (0, 27)
        apply(
            &src,
            &mut out,
            &table,
            Choice {
                dx: 0,
                dy: 0,
                flip: true,
            },
        );
        assert_eq!(out[0], table[src[27] as usize]);
        // shifted down by two: the first two rows are background
        apply(
            &src,
            &mut out,
            &table,
            Choice {
                dx: 0,
                dy: -2,
                flip: false,
            },
        );
        assert!(out[..2 * SIDE].iter().all(|&v| v == table[0]));
        assert_eq!(out[2 * SIDE], table[src[0] as usize]);
    }
}
