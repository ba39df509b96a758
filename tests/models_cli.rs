//! Models chosen with `--model`: the ResNet proxy trains through the real binary, and the
//! full-size models are refused with a plain reason (they need ImageNet, which is not shipped).

mod common;
use common::*;

/// One epoch on a twentieth of the training set lifts the ResNet proxy far above chance (10 %).
#[test]
fn resnet_proxy_learns_in_one_epoch_on_a_subset() {
    let out = run(bin().args([
        "trial",
        "--model",
        "resnet20-proxy",
        "--batch",
        "64",
        "--epochs",
        "1",
        "--data-fraction",
        "0.05",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--warmup-epochs",
        "0.2",
        "--precision",
        "fp32",
        "--threads",
        "2",
        "--seed",
        "3",
    ]));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "trial failed: {stderr}");
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a final line")).expect("JSON");
    assert_eq!(last["event"], "final", "{stdout}");
    let top1 = last["final_val_top1"].as_f64().expect("final_val_top1");
    assert!(
        top1 > 0.5,
        "ResNet proxy after one epoch on 3,000 images: test top-1 {top1}"
    );
}

#[test]
fn full_size_models_need_imagenet() {
    for model in ["resnet50", "alexnet-bn"] {
        let out = run(bin().args(["trial", "--model", model, "--epochs", "1"]));
        let (stdout, stderr) = texts(&out);
        assert!(
            !out.status.success(),
            "{model} trained on Fashion-MNIST: {stdout}"
        );
        assert!(
            stderr.contains("224x224x3") && stderr.contains("ImageNet") && stderr.contains(model),
            "{stderr}"
        );
        assert!(stdout.is_empty(), "{stdout}");
    }
    let out = run(bin().args(["trial", "--model", "vgg16"]));
    let stderr = texts(&out).1;
    assert!(
        !out.status.success() && stderr.contains("resnet20-proxy"),
        "{stderr}"
    );
}
