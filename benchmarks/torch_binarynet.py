"""PyTorch's side of the BinaryNet throughput comparison (benchmarks/README.md).

The paper's BinaryNet and its section 5.1 training step (``bop`` set: batch 100, Bop
with threshold 1e-6 and gamma 1e-3 on the binary kernels, Adam 0.01 on the rest), the
way a PyTorch user would write it: eager PyTorch, ``F.cross_entropy`` on the logits,
Bop as an in-place update of each kernel and its moving average, and the flip count
taken from Bop's own flip mask. Trained on one random batch held in memory, so the
figure is the model and optimizer alone. Prints training images per second over the
timed steps, then one line of JSON.

The same computation as ``bnno benchmark binarynet --hparams-set bop``:

- six 3x3 convolutions (128, 128, 256, 256, 512, 512 filters, the first "valid",
  the rest "same") and three dense layers (1024, 1024, 10), none with a bias, each
  followed by batch normalization without a scale (Keras's momentum 0.99 and epsilon
  1e-3); 2x2 max pooling after convolutions 2, 4 and 6;
- every layer but the first takes ``ste_sign`` of its input: sign with sign(0) = +1
  forward, the upstream gradient where |x| <= 1 backward;
- kernels are +-1 and used as they are (larq's ``NoOp(precision=1)``: Bop's kernels);
- Bop (Helwegen et al., 2019, Algorithm 1): ``m <- m + gamma (g - m)``, then w flips
  where ``w * m > threshold``; Adam (lr 0.01, epsilon 1e-7 as Keras's) on the rest;
- the step also counts top-1 correct predictions, as bnno's step does.

Run it in an environment with PyTorch (benchmarks/run_torch.sh builds one):
    python benchmarks/torch_binarynet.py --batch-size 100 --steps 20 [--channels-last]
        [--device cuda] [--bfloat16] [--profile]
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

THRESHOLD, GAMMA, LEARNING_RATE = 1e-6, 1e-3, 0.01


class SteSign(torch.autograd.Function):
    """Sign with sign(0) = +1; the straight-through estimator clipped at |x| <= 1."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, upstream):
        (x,) = ctx.saved_tensors
        return upstream * (x.abs() <= 1).to(upstream.dtype)


def batch_norm_2d(channels):
    # Keras's momentum 0.99 is PyTorch's 0.01; scale=False: the weight stays 1.
    norm = nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)
    norm.weight.requires_grad_(False)
    return norm


def batch_norm_1d(features):
    norm = nn.BatchNorm1d(features, eps=1e-3, momentum=0.01)
    norm.weight.requires_grad_(False)
    return norm


class BinaryNet(nn.Module):
    def __init__(self, filters=128, dense_units=1024, num_classes=10):
        super().__init__()
        widths = [filters, filters, 2 * filters, 2 * filters, 4 * filters, 4 * filters]
        self.convs = nn.ModuleList()
        self.conv_norms = nn.ModuleList()
        channels = 3
        for i, width in enumerate(widths):
            self.convs.append(nn.Conv2d(channels, width, 3, padding=0 if i == 0 else 1, bias=False))
            self.conv_norms.append(batch_norm_2d(width))
            channels = width
        self.denses = nn.ModuleList()
        self.dense_norms = nn.ModuleList()
        features = channels * 3 * 3  # 32 -> 30 ("valid") -> 15 -> 7 -> 3 (pools)
        for units in (dense_units, dense_units, num_classes):
            self.denses.append(nn.Linear(features, units, bias=False))
            self.dense_norms.append(batch_norm_1d(units))
            features = units
        with torch.no_grad():
            for kernel in self.binary_kernels():
                kernel.copy_(torch.where(torch.randn_like(kernel) >= 0, 1.0, -1.0))

    def binary_kernels(self):
        return [m.weight for m in (*self.convs, *self.denses)]

    def forward(self, x):
        for i, (conv, norm) in enumerate(zip(self.convs, self.conv_norms)):
            x = conv(x if i == 0 else SteSign.apply(x))
            if i in (1, 3, 5):
                x = F.max_pool2d(x, 2, 2)
            x = norm(x)
        x = x.flatten(1)
        for dense, norm in zip(self.denses, self.dense_norms):
            x = norm(dense(SteSign.apply(x)))
        return x


class Bop:
    """Bop on a list of +-1 kernels: in place, one moving average per kernel."""

    def __init__(self, kernels, threshold=THRESHOLD, gamma=GAMMA):
        self.kernels, self.threshold, self.gamma = kernels, threshold, gamma
        self.averages = [torch.zeros_like(k) for k in kernels]

    @torch.no_grad()
    def step(self):
        """Update the averages, flip the kernels; the number of flips (a tensor)."""
        flips = []
        for kernel, average in zip(self.kernels, self.averages):
            average.lerp_(kernel.grad, self.gamma)  # m + gamma (g - m)
            flip = (kernel * average) > self.threshold
            kernel.mul_(1 - 2 * flip.to(kernel.dtype))  # -w where flipped
            flips.append(flip.sum())
        return torch.stack(flips).sum()

    def zero_grad(self):
        for kernel in self.kernels:
            kernel.grad = None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC memory layout for the convolutions (PyTorch's faster one on CPUs)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU")
    parser.add_argument("--bfloat16", action="store_true",
                        help="forward and backward under torch.autocast in bfloat16 (weights stay float32)")
    parser.add_argument("--profile", action="store_true",
                        help="after timing, profile 3 more steps and print the ops by CPU time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    device = torch.device(args.device)
    model = BinaryNet().to(device=device, memory_format=layout)
    bop = Bop(model.binary_kernels())
    binary_ids = {id(k) for k in bop.kernels}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in binary_ids]
    adam = torch.optim.Adam(others, lr=LEARNING_RATE, eps=1e-7)

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(args.batch_size, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, size=args.batch_size).astype(np.int64)
    images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(memory_format=layout).to(device)
    labels = torch.from_numpy(labels).to(device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bfloat16):
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
        adam.zero_grad(set_to_none=True)
        bop.zero_grad()
        loss.backward()
        adam.step()
        flips = bop.step()
        correct = (logits.argmax(1) == labels).sum()
        loss.item(), int(flips), int(correct)  # wait for the step, as bnno's loop does

    model.train()
    seconds = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        step()
        if i >= args.warmup:
            seconds.append(time.perf_counter() - start)
    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            for _ in range(3):
                step()
        print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    result = {
        "library": f"torch {torch.__version__}",
        "layout": "channels_last" if args.channels_last else "NCHW",
        "device": str(device), "precision": "bfloat16 autocast" if args.bfloat16 else "float32",
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size, "steps": len(seconds),
        "images_per_second": args.batch_size * len(seconds) / sum(seconds),
        "step_seconds_median": float(np.median(seconds)),
    }
    print(f"PyTorch binarynet (bop, {result['layout']}), batch {args.batch_size}: "
          f"{result['images_per_second']:.1f} images/s training")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
