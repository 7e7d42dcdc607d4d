"""GPU throughput of the training and analysis code paths, each against a reference in-process.

    python bench/gpu.py [--quick] [--compile MODE] [--peak-tflops T] [--only SECTION ...]

Sections (all by default), each printed as a Markdown table for the README:

``convnets``
    images/s and model-FLOP utilisation (MFU = 3 × forward FLOPs × images/s / peak bf16) of a
    training step of CIFAR ResNet-20 and ResNet-56 at widths ×1, ×2, ×4, ×8 and WRN-28-10, on
    data resident on the device (``widthlab.training``'s step: bf16 autocast, channels-last, fused
    SGD, optional ``torch.compile``).
``epoch``
    one epoch (50 000 images, batch 128) of CIFAR ResNet-38 ×1: widthlab's step against a naive
    loop (host arrays copied per step, augmentation on the host, fp32, NCHW, a loss read per
    step), and their ratio. Goal: ≥ 5×.
``mlps``
    ms per step of many small MLPs: 64 MLPs of widths 16…2048 (8 seeds each) and 32 tiny ones
    (width 16), each trained as planned by ``widthlab.training.packs`` (the seeds of one width
    stacked) against a loop over the same models one by one. Goal: ≥ 10×.
``cka``
    the similarity stage's work for CIFAR ResNet-110 on 10 000 probe examples: activation
    extraction (every block's output, as the activations rule stores it), then all-pairs CKA
    with the minibatch (Nguyen et al.) and the full debiased estimators.

Synthetic inputs of the real shapes: throughput does not depend on pixel values, and the
device machine has no datasets. ``--quick`` shrinks every size (a CPU smoke run, used by the
tests). The reference of every ratio runs in the same process on the same device.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
import torch.nn.functional as F

from widthlab.activations import extract
from widthlab.cka import cka_matrix
from widthlab.grid import DataSpec, ModelSpec
from widthlab.models import build_model, forward_flops
from widthlab.training.learners import Data, OneModel, StackedMLPs
from widthlab.training.packs import plan_packs
from widthlab.training.settings import TrainConfig

# Dense bf16 tensor-core peaks (no sparsity), by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke run)")
    parser.add_argument(
        "--compile",
        default=None,
        choices=["default", "reduce-overhead", "max-autotune"],
        help="also time the convnet and MLP steps under torch.compile in this mode",
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak for MFU")
    parser.add_argument("--only", nargs="+", choices=["convnets", "epoch", "mlps", "cka"])
    return parser.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device: torch.device, repeats: int) -> float:
    """Seconds per call of ``function`` after one untimed warm-up call."""
    function()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    sync(device)
    return (time.perf_counter() - start) / repeats


def cifar_like(n: int, device: torch.device, classes: int = 10) -> Data:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=generator).to(device)
    y = torch.randint(0, classes, (n,), generator=generator).to(device)
    return Data(x, y, x[:1], y[:1])


def spec(arch: str, width: int, depth: int, **kwargs) -> ModelSpec:
    return ModelSpec(DataSpec("cifar10"), arch, width, depth, **kwargs)


def learner_for(model_spec: ModelSpec, data: Data, cfg: TrainConfig, device) -> OneModel:
    torch.manual_seed(0)
    model = build_model(model_spec, tuple(data.x_train.shape[1:]), 10)
    return OneModel(model, 5e-4, data, cfg, device)


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


# ---------------------------------------------------------------------------------- sections


def convnets(args, device, peak):
    batch, steps = (4, 2) if args.quick else (256, 30)
    models = [spec("resnet", k, 20) for k in (1, 2, 4, 8)]
    models += [spec("resnet", k, 56) for k in (1, 2, 4, 8)]
    models.append(spec("wrn", 10, 28))
    if args.quick:
        models = [spec("resnet", 1, 8)]
    modes = [False] + ([args.compile] if args.compile else [])
    data = cifar_like(batch * steps, device)
    generators = [torch.Generator(device=device).manual_seed(0)]
    rows = []
    for model_spec in models:
        for mode in modes:
            cfg = TrainConfig(augment="crop_flip", device=device.type, compile=mode)
            learner = learner_for(model_spec, data, cfg, device)
            flops = forward_flops(learner.model, (3, 32, 32))
            batches = itertools.cycle(torch.arange(batch * steps, device=device).view(steps, 1, -1))

            def step(learner=learner, batches=batches):
                learner.step(next(batches), generators)

            seconds = timed(step, device, steps)
            images = batch / seconds
            mfu = f"{3 * flops * images / (peak * 1e12):.1%}" if peak else "–"
            name = f"{model_spec.arch}-{model_spec.depth} ×{model_spec.width}"
            rows.append([name, str(mode or "eager"), f"{images:,.0f}", mfu, f"{flops / 1e9:.2f}"])
    table(
        f"Training step, batch {batch}, bf16 autocast, channels-last ({device_name(device)})",
        ["model", "compile", "images/s", "MFU (bf16)", "forward GFLOPs/image"],
        rows,
    )


def naive_epoch(model, x: np.ndarray, y: np.ndarray, batch: int, device) -> None:
    """The loop widthlab replaces: host data, host augmentation, fp32, a sync every step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    for start in range(0, len(x), batch):
        idx = order[start : start + batch]
        dy, dx = rng.integers(0, 9, 2)
        xb = padded[idx, :, dy : dy + 32, dx : dx + 32]
        if rng.random() < 0.5:
            xb = xb[..., ::-1]
        xb = torch.from_numpy(np.ascontiguousarray(xb)).to(device)
        yb = torch.from_numpy(y[idx]).to(device)
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()


def epoch(args, device, peak):
    n, batch, depth = (64, 32, 8) if args.quick else (50_000, 128, 38)
    data = cifar_like(n, device)
    host_x, host_y = data.x_train.cpu().numpy(), data.y_train.cpu().numpy()
    model_spec = spec("resnet", 1, depth)
    torch.manual_seed(0)
    naive_model = build_model(model_spec, (3, 32, 32), 10).to(device)
    naive_s = timed(lambda: naive_epoch(naive_model, host_x, host_y, batch, device), device, 1)
    rows = [["naive loop (host data, fp32)", f"{naive_s:.2f}", "1.0×"]]
    modes = [False] + ([args.compile] if args.compile else [])
    for mode in modes:
        cfg = TrainConfig(augment="crop_flip", device=device.type, compile=mode)
        learner = learner_for(model_spec, data, cfg, device)
        generators = [torch.Generator(device=device).manual_seed(0)]

        def run_epoch(learner=learner, generators=generators):
            perm = torch.randperm(n, device=device, generator=generators[0])
            for start in range(0, n, batch):
                learner.step(perm[start : start + batch].unsqueeze(0), generators)

        seconds = timed(run_epoch, device, 1)
        rows.append(
            [f"widthlab step ({mode or 'eager'})", f"{seconds:.2f}", f"{naive_s / seconds:.1f}×"]
        )
    table(
        f"CIFAR ResNet-{depth} ×1, one epoch of {n} images, batch {batch} ({device_name(device)})",
        ["loop", "seconds", "speed-up"],
        rows,
    )


def mlp_specs(widths, seeds) -> list[ModelSpec]:
    return [ModelSpec(DataSpec("mnist"), "mlp", w, 2, seed=s) for w in widths for s in seeds]


def mlps(args, device, peak):
    batch = 128
    n = 4 * batch
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=generator).to(device)
    y = torch.randint(0, 10, (n,), generator=generator).to(device)
    data = Data(x, y, x[:1], y[:1])
    if args.quick:
        cases = {"4 MLPs, widths 16…128": mlp_specs((16, 128), (0, 1))}
        cases["8 tiny MLPs (width 16)"] = mlp_specs((16,), range(8))
    else:
        cases = {"64 MLPs, widths 16…2048": mlp_specs([16 * 2**k for k in range(8)], range(8))}
        cases["32 tiny MLPs (width 16)"] = mlp_specs((16,), range(32))
    modes = [False] + ([args.compile] if args.compile else [])
    gens = [torch.Generator(device=device).manual_seed(0)]  # unused: no augmentation
    rows = []
    for title, specs in cases.items():
        for mode in modes:
            cfg = TrainConfig(device=device.type, compile=mode)
            torch.manual_seed(0)
            alone = [
                OneModel(build_model(s, (1, 28, 28), 10), 0.0, data, cfg, device) for s in specs
            ]
            packs = plan_packs([(s, cfg.to_dict()) for s in specs], max_models=64)
            by_id = {s.id: s for s in specs}
            stacked = [
                StackedMLPs(
                    [build_model(by_id[m], (1, 28, 28), 10) for m in pack.ids],
                    0.0,
                    data,
                    cfg,
                    device,
                )
                for pack in packs
            ]
            index = torch.randint(0, n, (len(specs), batch), generator=generator).to(device)

            def loop_step(alone=alone, index=index):
                for row, learner in enumerate(alone):
                    learner.step(index[row : row + 1], gens)

            def pack_step(stacked=stacked, index=index, packs=packs):
                start = 0
                for pack, learner in zip(packs, stacked, strict=True):
                    learner.step(index[start : start + len(pack.ids)], gens * len(pack.ids))
                    start += len(pack.ids)

            repeats = 3 if args.quick else 50
            loop_ms = 1e3 * timed(loop_step, device, repeats)
            pack_ms = 1e3 * timed(pack_step, device, repeats)
            rows.append(
                [
                    title,
                    str(mode or "eager"),
                    str(len(packs)),
                    f"{loop_ms:.1f}",
                    f"{pack_ms:.1f}",
                    f"{loop_ms / pack_ms:.1f}×",
                ]
            )
    table(
        f"Many small MLPs, one step of every model, batch {batch} ({device_name(device)})",
        ["models", "compile", "packs", "loop ms/step", "packed ms/step", "speed-up"],
        rows,
    )


def cka(args, device, peak):
    n, depth = (64, 8) if args.quick else (10_000, 110)
    model_spec = spec("resnet", 1, depth)
    torch.manual_seed(0)
    model = build_model(model_spec, (3, 32, 32), 10)
    x = np.random.default_rng(0).standard_normal((n, 3, 32, 32)).astype(np.float32)
    start = time.perf_counter()
    layers, _ = extract(model, x, batch_size=512, device=device.type)
    sync(device)
    extract_s = time.perf_counter() - start
    rows = [["extract activations", str(len(layers)), f"{extract_s:.1f}"]]
    arrays = list(layers.values())
    for estimator in ("minibatch", "debiased"):
        start = time.perf_counter()
        cka_matrix(arrays, estimator=estimator, device=device)
        sync(device)
        rows.append(
            [f"all-pairs CKA, {estimator}", str(len(arrays)), f"{time.perf_counter() - start:.1f}"]
        )
    table(
        f"Similarity stage, CIFAR ResNet-{depth} ×1, {n} probe examples ({device_name(device)})",
        ["step", "layers", "seconds"],
        rows,
    )


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def peak_tflops(args, device) -> float | None:
    if args.peak_tflops or device.type != "cuda":
        return args.peak_tflops
    name = device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def main():
    args = parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak = peak_tflops(args, device)
    print(
        f"device: {device_name(device)}; torch {torch.__version__}; "
        f"bf16 peak {peak or 'unknown'} TFLOP/s; threads {torch.get_num_threads()}"
    )
    sections = {"convnets": convnets, "epoch": epoch, "mlps": mlps, "cka": cka}
    for name in args.only or sections:
        sections[name](args, device, peak)


if __name__ == "__main__":
    main()
