"""The ``cnnrs`` command (also ``python -m cnnrs``).

    cnnrs train lenet [--dataset digits|fashion-mnist|mnist] [--data-dir DIR]
                      [--epochs E] [--batch-size B] [--lr LR] [--momentum M]
                      [--seed S] [--threads T] [--out FILE]
    cnnrs eval lenet --weights FILE [--dataset ...] [--data-dir DIR]

Per-epoch lines go to stdout, progress bars to stderr; the last line on stdout
is one JSON object with the final metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

# Per dataset: epochs, batch size, learning rate (SGD with momentum 0.9).
_DEFAULTS = {
    "digits": (20, 32, 0.03),
    "fashion-mnist": (2, 64, 0.05),
    "mnist": (2, 64, 0.05),
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model name (lenet)")
    p.add_argument("--dataset", default="digits", help="digits (bundled), fashion-mnist, mnist")
    p.add_argument("--data-dir", default=None,
                   help="folder with the IDX files (fashion-mnist, mnist)")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all CPUs)")
    p.add_argument("--batch-size", type=int, default=None)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cnnrs", description="Train and run CNNs on the CPU.")
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a model and save its weights")
    _common(tr)
    tr.add_argument("--epochs", type=int, default=None)
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--momentum", type=float, default=0.9)
    tr.add_argument("--weight-decay", type=float, default=0.0)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--schedule", choices=["cosine", "none"], default="cosine",
                    help="learning-rate schedule over the run, stepped per batch (cosine)")
    tr.add_argument("--out", default=None,
                    help="weights file (safetensors); default MODEL-DATASET.safetensors")
    sm = sub.add_parser("summary", help="per-layer shapes, parameters, FLOPs, receptive field")
    sm.add_argument("model")
    sm.add_argument("--input-shape", default=None,
                    help="N,C,H,W (default: 1,1,32,32 for lenet, 1,3,32,32 for CIFAR "
                         "resnets, 1,3,224,224 otherwise)")
    sm.add_argument("--num-classes", type=int, default=None)
    ev = sub.add_parser("eval", help="evaluate saved weights")
    _common(ev)
    ev.add_argument("--weights", required=True)
    return ap


def _canon_dataset(name: str) -> str:
    name = name.lower().replace("_", "-")
    return "fashion-mnist" if name in ("fashion-mnist", "fashionmnist", "fmnist") else name


def _summary(args) -> int:
    from cnnrs import models

    name = args.model.lower()
    if args.input_shape:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    elif name.startswith("lenet"):
        shape = (1, 1, 32, 32)
    elif name in ("resnet20", "resnet32", "resnet44", "resnet56"):
        shape = (1, 3, 32, 32)
    else:
        shape = (1, 3, 224, 224)
    kwargs = {"in_channels": shape[1]}
    if args.num_classes:
        kwargs["num_classes"] = args.num_classes
    try:
        model = models.get_model(name, **kwargs)
        print(models.summary(model, shape))
    except ValueError as e:
        print(f"cnnrs: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "summary":
        return _summary(args)
    import cnnrs
    from cnnrs import io, models, training
    from cnnrs.data import DataLoader, TensorDataset
    from cnnrs.optim import SGD
    from cnnrs.optim.lr_scheduler import CosineAnnealingLR

    if args.threads is not None:
        cnnrs.set_num_threads(args.threads)
    dataset = _canon_dataset(args.dataset)
    if dataset not in _DEFAULTS:
        print(f"cnnrs: unknown dataset {args.dataset!r}; known: {', '.join(_DEFAULTS)}",
              file=sys.stderr)
        return 2
    epochs_d, batch_d, lr_d = _DEFAULTS[dataset]
    try:
        xtr, ytr, xte, yte, split = training.prepare_dataset(dataset, args.data_dir)
        model = models.get_model(args.model, num_classes=10, in_channels=1)
    except (ValueError, FileNotFoundError) as e:
        print(f"cnnrs: {e}", file=sys.stderr)
        return 2
    print(split, flush=True)
    batch = args.batch_size or batch_d
    result = {"model": args.model, "dataset": dataset}

    if args.command == "eval":
        model.load_state_dict(io.load(args.weights))
        t0 = time.perf_counter()
        m = training.evaluate(model, xte, yte)
        result.update(accuracy=round(m["accuracy"], 4), loss=round(m["loss"], 4),
                      seconds=round(time.perf_counter() - t0, 2), test_samples=len(yte),
                      weights=args.weights)
        print(json.dumps(result))
        return 0

    cnnrs.manual_seed(args.seed)
    model = models.get_model(args.model, num_classes=10, in_channels=1)
    epochs = args.epochs if args.epochs is not None else epochs_d
    opt = SGD(model.parameters(), lr=args.lr or lr_d, momentum=args.momentum,
              weight_decay=args.weight_decay)
    loader = DataLoader(TensorDataset(xtr, ytr), batch_size=batch, shuffle=True, seed=args.seed)
    print(f"training {args.model} ({sum(p.numel() for p in model.parameters()):,} parameters) "
          f"for {epochs} epochs, batch {batch}, lr {opt.param_groups[0]['lr']}, "
          f"{cnnrs.get_num_threads()} threads", flush=True)
    sched = None
    if args.schedule == "cosine":
        sched = CosineAnnealingLR(opt, T_max=max(epochs * len(loader), 1))
    t0 = time.perf_counter()
    test = {"accuracy": float("nan")}
    for epoch in range(1, epochs + 1):
        te = time.perf_counter()
        tr = training.train_epoch(model, loader, opt, desc=f"epoch {epoch}/{epochs}",
                                  schedule=sched.step if sched else None)
        test = training.evaluate(model, xte, yte)
        print(f"epoch {epoch}/{epochs}  loss {tr['loss']:.4f}  train_acc {tr['accuracy']:.4f}  "
              f"test_acc {test['accuracy']:.4f}  ({time.perf_counter() - te:.1f} s)", flush=True)
    seconds = time.perf_counter() - t0
    out = args.out or training.default_out(args.model, dataset)
    io.save(model.state_dict(), out, metadata={"model": args.model, "dataset": dataset})
    print(f"saved weights to {out}", flush=True)
    result.update(epochs=epochs, accuracy=round(test["accuracy"], 4), seconds=round(seconds, 2),
                  train_samples=len(ytr), test_samples=len(yte), weights=out)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
