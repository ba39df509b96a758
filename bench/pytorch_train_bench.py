"""Times forward + backward + SGD step of the proxy AlexNet-BN in PyTorch (CPU, f32).

Prints one JSON line like `jizhi-tune bench train`: images_per_sec at the median step.
"""
import argparse
import json
import statistics
import time

import torch

from pytorch_proxy import proxy_alexnet_bn, training_images


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = proxy_alexnet_bn().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = training_images(a.batch)
    secs = []
    for i in range(a.warmup + a.steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if i >= a.warmup:
            secs.append(time.perf_counter() - t)
    median = statistics.median(secs)
    print(json.dumps({"bench": "pytorch-train", "images_per_sec": a.batch / median, "median_step_secs": median,
                      "batch": a.batch, "threads": a.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
