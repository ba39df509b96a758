//! Parameter storage: every parameter's values, half-rounded compute copy and gradient live in
//! flat buffers laid out in *backward order*, so a gradient fusion bucket (a run of consecutive
//! parameters in backward order) is one contiguous slice.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// What role a parameter plays (decides weight decay and LARS exclusion).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamKind {
    /// Convolution or dense weight matrix.
    Weight,
    /// Convolution or dense bias.
    Bias,
    /// BatchNorm gamma or beta.
    Bn,
}

/// One entry of the parameter inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamInfo {
    /// Dotted name, e.g. `conv1.weight`, `bn1.gamma`, `fc6.bias`.
    pub name: String,
    /// Role of the parameter.
    pub kind: ParamKind,
    /// Shape in storage order (conv weights HWIO, dense weights `[in, out]`).
    pub shape: Vec<usize>,
    /// Number of values.
    pub numel: usize,
    /// Size in bytes as f32.
    pub bytes: u64,
}

/// Handle on a parameter (its registration index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamId(usize);

/// Collects parameters in forward (registration) order.
#[derive(Debug, Default)]
pub struct ParamBuilder {
    entries: Vec<(ParamInfo, Vec<f32>)>,
}

impl ParamBuilder {
    /// Registers a parameter with its initial values.
    pub fn add(
        &mut self,
        name: &str,
        kind: ParamKind,
        shape: Vec<usize>,
        init: Vec<f32>,
    ) -> ParamId {
        let numel = init.len();
        debug_assert_eq!(numel, shape.iter().product::<usize>());
        let info = ParamInfo {
            name: name.to_string(),
            kind,
            shape,
            numel,
            bytes: 4 * numel as u64,
        };
        self.entries.push((info, init));
        ParamId(self.entries.len() - 1)
    }

    /// Lays the parameters out in backward order (reverse registration order).
    pub fn build(self) -> ParamStore {
        let count = self.entries.len();
        let total: usize = self.entries.iter().map(|(i, _)| i.numel).sum();
        let mut values = Vec::with_capacity(total);
        let mut slots = vec![0..0; count];
        let mut infos = Vec::with_capacity(count);
        for (id, (info, init)) in self.entries.into_iter().enumerate().rev() {
            slots[id] = values.len()..values.len() + init.len();
            values.extend_from_slice(&init);
            infos.push(info);
        }
        ParamStore {
            infos,
            slots,
            grads: vec![0.0; total],
            compute: Vec::new(),
            values,
        }
    }
}

/// Flat parameter, compute-copy and gradient buffers.
#[derive(Debug, Clone)]
pub struct ParamStore {
    infos: Vec<ParamInfo>,
    slots: Vec<Range<usize>>,
    /// Master values (f32; already half-valued in fp16-naive).
    pub values: Vec<f32>,
    /// Half-rounded copy of `values` used by forward/backward in mixed precision (empty otherwise).
    pub compute: Vec<f32>,
    /// Gradients (written by backward).
    pub grads: Vec<f32>,
}

impl ParamStore {
    /// Inventory in backward order.
    pub fn inventory(&self) -> &[ParamInfo] {
        &self.infos
    }

    /// Ranges of each parameter in the flat buffers, in backward order (parallel to `inventory`).
    pub fn ranges_backward(&self) -> Vec<Range<usize>> {
        let mut r: Vec<_> = self.slots.clone();
        r.sort_by_key(|s| s.start);
        r
    }

    /// Range of one parameter in the flat buffers.
    pub fn slot(&self, id: ParamId) -> Range<usize> {
        self.slots[id.0].clone()
    }

    /// The values forward/backward must use: the compute copy when one is active.
    pub fn forward_values(&self) -> &[f32] {
        if self.compute.is_empty() {
            &self.values
        } else {
            &self.compute
        }
    }

    /// Total number of parameter values.
    pub fn numel(&self) -> usize {
        self.values.len()
    }
}

/// Two disjoint mutable sub-slices of `buf`.
pub fn two_mut(buf: &mut [f32], a: Range<usize>, b: Range<usize>) -> (&mut [f32], &mut [f32]) {
    assert!(
        a.end <= b.start || b.end <= a.start,
        "two_mut: overlapping ranges"
    );
    if a.start < b.start {
        let (lo, hi) = buf.split_at_mut(b.start);
        (&mut lo[a], &mut hi[..b.end - b.start])
    } else {
        let (lo, hi) = buf.split_at_mut(a.start);
        let (bb, aa) = (&mut lo[b], &mut hi[..a.end - a.start]);
        (aa, bb)
    }
}
