//! Serde helpers that keep non-finite floats (a diverged trial's NaN or infinite
//! loss) through JSON, which has no literal for them.
//!
//! Finite values are written as ordinary JSON numbers; NaN and the infinities are
//! written as the strings `"NaN"`, `"inf"` and `"-inf"`. Reading accepts numbers,
//! those strings, and `null` (read as NaN, which is what plain serde_json writes).

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;
use std::fmt;

/// The string a non-finite value is written as, or `None` for a finite one.
fn non_finite_name(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("inf")
    } else if v == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

/// Visitor reading one float in any of the accepted spellings.
struct FloatVisitor;

impl<'de> Visitor<'de> for FloatVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, \"NaN\", \"inf\", \"-inf\" or null")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        match v {
            "NaN" | "nan" => Ok(f64::NAN),
            "inf" | "+inf" | "Infinity" | "infinity" => Ok(f64::INFINITY),
            "-inf" | "-Infinity" | "-infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
        Ok(f64::NAN)
    }

    fn visit_none<E: de::Error>(self) -> Result<f64, E> {
        Ok(f64::NAN)
    }
}

/// `serialize_with`/`deserialize_with` pair for `f64` fields.
pub(crate) mod f64_any {
    use super::*;

    /// Writes a finite value as a number and a non-finite one as a string.
    pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        match non_finite_name(*v) {
            Some(name) => s.serialize_str(name),
            None => s.serialize_f64(*v),
        }
    }

    /// Reads a number, a non-finite name, or null (as NaN).
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        d.deserialize_any(FloatVisitor)
    }
}

/// `serialize_with`/`deserialize_with` pair for `Option<f64>` fields.
pub(crate) mod opt_f64_any {
    use super::*;

    /// Wrapper serializing its float through [`f64_any`](super::f64_any).
    struct Any(f64);

    impl serde::Serialize for Any {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::f64_any::serialize(&self.0, s)
        }
    }

    /// Writes `None` as null and `Some(v)` like an `f64` field.
    pub(crate) fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) => s.serialize_some(&Any(*x)),
            None => s.serialize_none(),
        }
    }

    /// Visitor for the optional form: null is `None`, anything else a float.
    struct OptVisitor;

    impl<'de> Visitor<'de> for OptVisitor {
        type Value = Option<f64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("null, a number, \"NaN\", \"inf\" or \"-inf\"")
        }

        fn visit_none<E: de::Error>(self) -> Result<Option<f64>, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Option<f64>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
            d.deserialize_any(FloatVisitor).map(Some)
        }
    }

    /// Reads null as `None`, anything else like an `f64` field.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_option(OptVisitor)
    }
}
