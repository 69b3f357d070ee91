"""bnno, larq and PyTorch training BinaryNet's ``bop`` step side by side on this CPU.

Each round runs every contender once, one after another in a fixed order, each a whole
process timing ``--steps`` steps after ``--warmup`` (batch 100, CIFAR-10 shapes, one
random batch held in memory); then the script prints every round's images per second,
the medians, and each median against PyTorch's better layout.

Contenders: ``bnno`` (``bnno benchmark``, its default binary convolutions: exact
bfloat16 on CPUs with AMX), ``bnno-float32`` (``--binary-conv float32``; only on CPUs
with AMX, where the two differ), ``larq`` (benchmarks/larq_binarynet.py in its Keras 2
environment), ``torch-nchw`` and ``torch-channels-last`` (benchmarks/torch_binarynet.py).

``--isa avx2`` runs everything as on a CPU without AVX-512 and AMX: oneDNN (under
TensorFlow and PyTorch), PyTorch's own kernels and XLA generate AVX2 code only
(``ONEDNN_MAX_CPU_ISA=AVX2``, ``ATEN_CPU_CAPABILITY=avx2``,
``XLA_FLAGS=--xla_cpu_max_isa=AVX2``); TensorFlow's other kernels are compiled for
AVX anyway.

    python benchmarks/compare_cpu.py --larq-venv LARQ_VENV --torch-venv TORCH_VENV \\
        [--rounds 4] [--steps 20] [--isa avx2] [--only bnno,torch-channels-last]

(bnno must be installed in the running environment; benchmarks/run_larq.sh and
benchmarks/run_torch.sh build the other two environments.)
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

from bnno.inference import cpu_name
from bnno.nn.binary_conv import cpu_has_amx_bf16  # the test --binary-conv auto makes

HERE = pathlib.Path(__file__).resolve().parent
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}


def commands(args, amx: bool):
    """{contender: command line}."""
    bnno = [sys.executable, "-m", "bnno", "benchmark", "binarynet", "--hparams-set", "bop",
            "--batch-size", str(args.batch_size), "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--json"]
    timing = ["--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    found = {"bnno": bnno}
    if amx:
        found["bnno-float32"] = bnno + ["--binary-conv", "float32"]
    if args.larq_venv:
        found["larq"] = ["bash", str(HERE / "run_larq.sh"), args.larq_venv, *timing]
    if args.torch_venv:
        torch = [str(pathlib.Path(args.torch_venv) / "bin" / "python"), str(HERE / "torch_binarynet.py"), *timing]
        found["torch-nchw"] = torch
        found["torch-channels-last"] = torch + ["--channels-last"]
    return found


def images_per_second(command, environment) -> float:
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["images_per_second"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--larq-venv", help="larq's environment (benchmarks/run_larq.sh builds it)")
    parser.add_argument("--torch-venv", help="PyTorch's environment (benchmarks/run_torch.sh builds it)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--isa", choices=("native", "avx2"), default="native")
    parser.add_argument("--only", help="comma-separated contenders to run")
    args = parser.parse_args()

    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if args.isa == "avx2":
        environment.update(AVX2)
    amx = cpu_has_amx_bf16() and args.isa == "native"
    contenders = commands(args, amx)
    if args.only:
        wanted = args.only.split(",")
        contenders = {name: command for name, command in contenders.items() if name in wanted}
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, instructions: {args.isa}{' (AMX)' if amx else ''}; "
          f"BinaryNet bop, batch {args.batch_size}, {args.steps} steps after {args.warmup}")
    rates = {name: [] for name in contenders}
    for round_number in range(1, args.rounds + 1):
        for name, command in contenders.items():
            rates[name].append(images_per_second(command, environment))
        print(f"round {round_number}: " + ", ".join(f"{n} {r[-1]:.1f}" for n, r in rates.items()), flush=True)

    medians = {name: statistics.median(r) for name, r in rates.items()}
    torch_best = max((m for n, m in medians.items() if n.startswith("torch")), default=None)
    width = max(len("contender"), *(len(name) for name in rates))
    print(f"\n{'contender':<{width}}  {'median':>7}  {'vs PyTorch best':>15}  rounds (images/s)")
    for name, rounds in rates.items():
        ratio = f"{medians[name] / torch_best:.2f}x" if torch_best else "-"
        print(f"{name:<{width}}  {medians[name]:7.1f}  {ratio:>15}  {', '.join(f'{r:.1f}' for r in rounds)}")


if __name__ == "__main__":
    main()
