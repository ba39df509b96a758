"""The 28x28 proxy AlexNet-BN in PyTorch, exactly as jizhi-tune's trainer builds it.

Used by the benchmark (train_vs_pytorch.sh) as the speed anchor, measured in the same run.
"""
import gzip
import os

import numpy as np
import torch
from torch import nn

FASHION_MNIST_DIR = os.environ.get("JIZHI_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
MEAN, STD = 0.2860, 0.3530


def proxy_alexnet_bn(bn5: bool = True) -> nn.Module:
    """conv 3x3 1-16-32-48-48-32 with BN+ReLU, pools after 1, 2, 5; BN5 on pool5; fc 288-256-256-10."""
    def block(cin, cout, pool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        return layers

    layers = block(1, 16, True) + block(16, 32, True) + block(32, 48, False) + block(48, 48, False) + block(48, 32, True)
    if bn5:
        layers.append(nn.BatchNorm2d(32))
    layers += [
        nn.Flatten(),
        nn.Linear(288, 256), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(256, 256), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(256, 10),
    ]
    return nn.Sequential(*layers)


def training_images(n: int):
    """The first n Fashion-MNIST training images (normalised, NCHW) and labels."""
    with gzip.open(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")) as f:
        pixels = np.frombuffer(f.read(), dtype=np.uint8, offset=16)[: n * 784]
    with gzip.open(os.path.join(FASHION_MNIST_DIR, "train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:n]
    x = (pixels.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(x.reshape(n, 1, 28, 28).copy()), torch.from_numpy(labels.astype(np.int64))
