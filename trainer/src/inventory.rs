//! Parameter inventories of the full-size ImageNet models — names, roles and shapes in backward
//! order, as their gradients become final — for the communication cost model and fusion planning.
//! The CPU trainer trains the 28×28 proxies; these are the models the nominal batch sizes and
//! rank counts refer to.

use crate::params::{ParamInfo, ParamKind};

/// Collects parameters in forward order and hands them back in backward order.
#[derive(Default)]
struct Inventory(Vec<ParamInfo>);

impl Inventory {
    fn add(&mut self, name: String, kind: ParamKind, shape: Vec<usize>) {
        let numel = shape.iter().product::<usize>();
        self.0.push(ParamInfo {
            name,
            kind,
            shape,
            numel,
            bytes: 4 * numel as u64,
        });
    }

    /// A convolution (HWIO weights) with an optional bias, followed by batch norm.
    fn conv_bn(&mut self, conv: &str, bn: &str, k: usize, cin: usize, cout: usize, bias: bool) {
        self.add(
            format!("{conv}.weight"),
            ParamKind::Weight,
            vec![k, k, cin, cout],
        );
        if bias {
            self.add(format!("{conv}.bias"), ParamKind::Bias, vec![cout]);
        }
        self.bn(bn, cout);
    }

    fn bn(&mut self, bn: &str, c: usize) {
        self.add(format!("{bn}.gamma"), ParamKind::Bn, vec![c]);
        self.add(format!("{bn}.beta"), ParamKind::Bn, vec![c]);
    }

    fn dense(&mut self, name: &str, inp: usize, out: usize) {
        self.add(format!("{name}.weight"), ParamKind::Weight, vec![inp, out]);
        self.add(format!("{name}.bias"), ParamKind::Bias, vec![out]);
    }

    fn backward_order(mut self) -> Vec<ParamInfo> {
        self.0.reverse();
        self.0
    }
}

/// AlexNet-BN for 224×224 ImageNet (You et al. 2017): BN after each of the five convolutions,
/// plus the BN on the pool5 features when `bn5`; fc6 9216→4096, fc7 4096→4096, fc8 4096→1000.
pub fn alexnet_bn(bn5: bool) -> Vec<ParamInfo> {
    let mut inv = Inventory::default();
    let convs = [
        (11, 3, 96),
        (5, 96, 256),
        (3, 256, 384),
        (3, 384, 384),
        (3, 384, 256),
    ];
    for (i, &(k, cin, cout)) in convs.iter().enumerate() {
        inv.conv_bn(
            &format!("conv{}", i + 1),
            &format!("bn{}", i + 1),
            k,
            cin,
            cout,
            true,
        );
    }
    if bn5 {
        inv.bn("bn_pool5", 256);
    }
    inv.dense("fc6", 256 * 6 * 6, 4096);
    inv.dense("fc7", 4096, 4096);
    inv.dense("fc8", 4096, 1000);
    inv.backward_order()
}

/// ResNet-50 v1 (bottleneck blocks [3, 4, 6, 3], convolutions without bias, a projection
/// shortcut at the first block of each stage), 1000 classes.
pub fn resnet50() -> Vec<ParamInfo> {
    let mut inv = Inventory::default();
    inv.conv_bn("conv1", "bn1", 7, 3, 64, false);
    let mut cin = 64;
    for (stage, (&blocks, width)) in [3, 4, 6, 3].iter().zip([64, 128, 256, 512]).enumerate() {
        for block in 0..blocks {
            let p = format!("layer{}.{block}", stage + 1);
            inv.conv_bn(
                &format!("{p}.conv1"),
                &format!("{p}.bn1"),
                1,
                cin,
                width,
                false,
            );
            inv.conv_bn(
                &format!("{p}.conv2"),
                &format!("{p}.bn2"),
                3,
                width,
                width,
                false,
            );
            inv.conv_bn(
                &format!("{p}.conv3"),
                &format!("{p}.bn3"),
                1,
                width,
                4 * width,
                false,
            );
            if block == 0 {
                inv.conv_bn(
                    &format!("{p}.downsample.conv"),
                    &format!("{p}.downsample.bn"),
                    1,
                    cin,
                    4 * width,
                    false,
                );
            }
            cin = 4 * width;
        }
    }
    inv.dense("fc", 2048, 1000);
    inv.backward_order()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    /// fp16 gradient bytes of a tensor.
    fn half_bytes(p: &ParamInfo) -> u64 {
        2 * p.numel as u64
    }

    #[test]
    fn resnet50_matches_the_published_inventory() {
        let inv = resnet50();
        assert_eq!(inv.len(), 161);
        let total: usize = inv.iter().map(|p| p.numel).sum();
        assert_eq!(total, 25_557_032, "torchvision's resnet50 parameter count");
        let mib = inv.iter().map(half_bytes).sum::<u64>() as f64 / MIB;
        assert!((mib - 48.7).abs() < 0.05, "{mib} MiB of fp16 gradients");
        let small = inv.iter().filter(|p| (half_bytes(p) as f64) < MIB).count();
        assert_eq!(small, 143);
        assert_eq!(inv[0].name, "fc.bias", "backward order starts at the head");
        assert_eq!(inv[160].name, "conv1.weight");
    }

    #[test]
    fn alexnet_bn_fc6_dominates() {
        let inv = alexnet_bn(true);
        let fc6 = inv.iter().find(|p| p.name == "fc6.weight").expect("fc6");
        assert_eq!(fc6.shape, vec![9216, 4096]);
        let mib = half_bytes(fc6) as f64 / MIB;
        assert!((mib - 72.0).abs() < 0.1, "fc6 is {mib} MiB in fp16");
        assert_eq!(
            inv.len() - alexnet_bn(false).len(),
            2,
            "bn5 adds gamma and beta"
        );
        assert!(inv
            .iter()
            .all(|p| p.kind != ParamKind::Weight || p.name.ends_with(".weight")));
    }
}
