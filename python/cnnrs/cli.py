"""The ``cnnrs`` command (also ``python -m cnnrs``).

    cnnrs train MODEL [--dataset digits|fashion-mnist|mnist] [--data-dir DIR]
                      [--epochs E] [--batch-size B] [--lr LR] [--momentum M]
                      [--weight-decay WD] [--optimizer sgd|adam|adamw]
                      [--schedule cosine|onecycle|none] [--seed S] [--threads T]
                      [--crop-padding P] [--flip] [--shift S] [--noise STD]
                      [--rotate DEG] [--scale MIN,MAX] [--cutout SIZE]
                      [--out FILE] [--plot PNG]
    cnnrs eval MODEL --weights FILE [--dataset ...] [--data-dir DIR]
    cnnrs summary MODEL [--input-shape N,C,H,W]

    cnnrs train unet [--data-dir DIR] [--epochs E] [--steps S] [--batch-size B]
                     [--crop C] [--lr LR] [--base-width W] [--depth D]
                     [--padding same|valid] [--up transpose|bilinear]
                     [--batch-norm|--no-batch-norm] [--loss ce|dice|ce+dice]
                     [--weight-map] [--no-augment] [--out FILE] [--plot PNG]
    cnnrs eval unet --weights FILE [--data-dir DIR]
    cnnrs predict unet --weights FILE --input IMG [--mask GT] --out PANEL.png

MODEL is lenet, alexnet, resnet18/34/50/101/152 or resnet20/32/44/56 (image
classification), or unet (segmentation: synthetic cells by default; --data-dir
is the nuclei pair folder or images/ + masks/ folders; see cnnrs._unet_cli).
Per-epoch lines go to stdout, progress bars to stderr; the last line on stdout
is one JSON object with the final metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

from . import _unet_cli

# (epochs, batch size, learning rate, weight decay) by model family and dataset.
_DEFAULTS = {
    ("lenet", "digits"): (20, 32, 0.03, 0.0),
    ("lenet", "fashion-mnist"): (2, 64, 0.05, 0.0),
    ("lenet", "mnist"): (2, 64, 0.05, 0.0),
    ("other", "digits"): (15, 64, 0.05, 5e-4),
    ("other", "fashion-mnist"): (5, 128, 0.1, 5e-4),
    ("other", "mnist"): (3, 128, 0.1, 5e-4),
}
_DATASETS = ("digits", "fashion-mnist", "mnist")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="lenet, alexnet, resnet18..152, resnet20..56, unet")
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
    tr.add_argument("--weight-decay", type=float, default=None)
    tr.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=None,
                    help="default: sgd (adam for unet)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--schedule", choices=["cosine", "onecycle", "none"], default="cosine",
                    help="learning-rate schedule over the run, stepped per batch (cosine)")
    aug = tr.add_argument_group("augmentation (applied to each training batch, in this order)")
    aug.add_argument("--crop-padding", type=int, default=0, help="random crop after padding P")
    aug.add_argument("--flip", action="store_true", help="random horizontal flip")
    aug.add_argument("--shift", type=int, default=0, help="random shift of up to S pixels")
    aug.add_argument("--rotate", type=float, default=0.0, help="random rotation of up to DEG")
    aug.add_argument("--scale", default=None, help="random scale in MIN,MAX")
    aug.add_argument("--noise", type=float, default=0.0, help="Gaussian noise of this std")
    aug.add_argument("--cutout", type=int, default=0, help="cutout square of this size")
    tr.add_argument("--out", default=None,
                    help="weights file (safetensors); default MODEL-DATASET.safetensors")
    tr.add_argument("--plot", default=None, help="write loss/accuracy curves to this PNG")
    _unet_cli.add_arguments(tr)
    sm = sub.add_parser("summary", help="per-layer shapes, parameters, FLOPs, receptive field")
    sm.add_argument("model")
    sm.add_argument("--input-shape", default=None,
                    help="N,C,H,W (default: 1,1,32,32 for lenet, 1,3,32,32 for CIFAR "
                         "resnets, 1,1,256,256 for unet, 1,3,224,224 otherwise)")
    sm.add_argument("--num-classes", type=int, default=None)
    ev = sub.add_parser("eval", help="evaluate saved weights")
    _common(ev)
    ev.add_argument("--weights", required=True)
    ev.add_argument("--seed", type=int, default=0, help="(unet, synthetic data) data seed")
    ev.add_argument("--crop", type=int, default=None, help="(unet, synthetic data) image size")
    ev.add_argument("--synthetic-images", type=int, default=48, help=argparse.SUPPRESS)
    pr = sub.add_parser("predict", help="segment an image with saved unet weights and write "
                                        "a panel PNG: input | ground truth | prediction")
    pr.add_argument("model", help="unet")
    pr.add_argument("--weights", required=True)
    pr.add_argument("--input", required=True, help="image file (PNG, TIFF, ...)")
    pr.add_argument("--mask", default=None, help="ground-truth label image (optional)")
    pr.add_argument("--out", required=True, help="the panel PNG to write")
    pr.add_argument("--threads", type=int, default=None)
    return ap


def _canon_dataset(name: str) -> str:
    name = name.lower().replace("_", "-")
    return "fashion-mnist" if name in ("fashion-mnist", "fashionmnist", "fmnist") else name


def _image_size(model: str, dataset: str) -> int:
    """LeNet-5 is defined on 32x32; AlexNet needs at least 63x63 (its digits
    run resizes to 64); the other models take the data at its own size (the
    28x28 MNIST-format images unpadded, digits resized to 32)."""
    model = model.lower()
    if model.startswith("lenet"):
        return 32
    if model == "alexnet":
        return 64
    return 32 if dataset == "digits" else 28


def _family(model: str) -> str:
    return "lenet" if model.lower().startswith("lenet") else "other"


def _summary(args) -> int:
    from cnnrs import models

    name = args.model.lower()
    if args.input_shape:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    elif name.startswith("lenet"):
        shape = (1, 1, 32, 32)
    elif name in ("resnet20", "resnet32", "resnet44", "resnet56"):
        shape = (1, 3, 32, 32)
    elif _is_unet(name):
        shape = (1, 1, 256, 256)
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


def _augmentation(args):
    from cnnrs.data import transforms as T

    steps = []
    if args.crop_padding:
        steps.append(("crop", lambda s: T.RandomCrop(s, padding=args.crop_padding)))
    if args.flip:
        steps.append(("flip", lambda s: T.RandomHorizontalFlip()))
    if args.shift:
        steps.append(("shift", lambda s: T.RandomShift(args.shift)))
    if args.rotate or args.scale:
        lo, hi = (float(v) for v in args.scale.split(",")) if args.scale else (1.0, 1.0)
        steps.append(("affine", lambda s: T.RandomAffine(args.rotate, (lo, hi))))
    if args.noise:
        steps.append(("noise", lambda s: T.GaussianNoise(args.noise)))
    if args.cutout:
        steps.append(("cutout", lambda s: T.Cutout(args.cutout)))
    return steps


def _is_unet(model: str) -> bool:
    return model.lower() == "unet"


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "summary":
        return _summary(args)
    if args.command == "predict" or _is_unet(args.model):
        if not _is_unet(args.model):
            print(f"cnnrs: predict supports unet only, got {args.model!r}", file=sys.stderr)
            return 2
        import cnnrs

        if args.threads is not None:
            cnnrs.set_num_threads(args.threads)
        run = {"train": _unet_cli.train, "eval": _unet_cli.evaluate,
               "predict": _unet_cli.predict}[args.command]
        return run(args)
    import cnnrs
    from cnnrs import io, models, training
    from cnnrs.data import DataLoader, TensorDataset
    from cnnrs.data import transforms as T
    from cnnrs.optim import SGD, Adam, AdamW
    from cnnrs.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR

    if args.threads is not None:
        cnnrs.set_num_threads(args.threads)
    dataset = _canon_dataset(args.dataset)
    if dataset not in _DATASETS:
        print(f"cnnrs: unknown dataset {args.dataset!r}; known: {', '.join(_DATASETS)}",
              file=sys.stderr)
        return 2
    epochs_d, batch_d, lr_d, wd_d = _DEFAULTS[(_family(args.model), dataset)]
    try:
        model = models.get_model(args.model, num_classes=10, in_channels=1)
        xtr, ytr, xte, yte, split = training.prepare_dataset(
            dataset, args.data_dir, _image_size(args.model, dataset))
        augment = ([make(xtr.shape[2:]) for _, make in _augmentation(args)]
                   if args.command == "train" else [])
    except (ValueError, FileNotFoundError) as e:
        print(f"cnnrs: {e}", file=sys.stderr)
        return 2
    print(split, flush=True)
    batch = args.batch_size or batch_d
    result = {"model": args.model, "dataset": dataset}

    if args.command == "eval":
        try:
            model.load_state_dict(io.load(args.weights))
        except (ValueError, OSError) as e:
            print(f"cnnrs: cannot load {args.weights}: {e}", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        m = training.evaluate(model, xte, yte)
        result.update(accuracy=round(m["accuracy"], 4), loss=round(m["loss"], 4),
                      seconds=round(time.perf_counter() - t0, 2), test_samples=len(yte),
                      weights=args.weights)
        print(json.dumps(result))
        return 0

    cnnrs.manual_seed(args.seed)
    model = models.get_model(args.model, num_classes=10, in_channels=1)
    args.optimizer = args.optimizer or "sgd"
    epochs = args.epochs if args.epochs is not None else epochs_d
    lr = args.lr or lr_d
    wd = args.weight_decay if args.weight_decay is not None else wd_d
    if args.optimizer == "sgd":
        opt = SGD(model.parameters(), lr=lr, momentum=args.momentum, weight_decay=wd)
    else:
        opt = (Adam if args.optimizer == "adam" else AdamW)(model.parameters(), lr=lr,
                                                             weight_decay=wd)
    loader = DataLoader(TensorDataset(xtr, ytr), batch_size=batch, shuffle=True, seed=args.seed,
                        drop_last=_family(args.model) != "lenet",
                        transform=T.Compose(augment) if augment else None)
    steps = max(epochs * len(loader), 1)
    sched = None
    if args.schedule == "cosine":
        sched = CosineAnnealingLR(opt, T_max=steps)
    elif args.schedule == "onecycle":
        sched = OneCycleLR(opt, max_lr=lr, total_steps=steps)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"training {args.model} ({n_params:,} parameters) for {epochs} epochs, batch {batch}, "
          f"{args.optimizer} lr {lr} wd {wd}, schedule {args.schedule}, "
          f"augmentation: {', '.join(a for a, _ in _augmentation(args)) or 'none'}, "
          f"{cnnrs.get_num_threads()} threads", flush=True)
    t0 = time.perf_counter()
    test = {"accuracy": float("nan"), "loss": float("nan")}
    history = []
    epoch_seconds = []
    for epoch in range(1, epochs + 1):
        te = time.perf_counter()
        tr = training.train_epoch(model, loader, opt, desc=f"epoch {epoch}/{epochs}",
                                  schedule=sched.step if sched else None)
        train_s = time.perf_counter() - te
        test = training.evaluate(model, xte, yte)
        epoch_seconds.append(train_s)
        history.append({"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["accuracy"],
                        "test_loss": test["loss"], "test_acc": test["accuracy"]})
        print(f"epoch {epoch}/{epochs}  loss {tr['loss']:.4f}  train_acc {tr['accuracy']:.4f}  "
              f"test_loss {test['loss']:.4f}  test_acc {test['accuracy']:.4f}  "
              f"({train_s:.1f} s train, {time.perf_counter() - te - train_s:.1f} s eval)",
              flush=True)
    seconds = time.perf_counter() - t0
    out = args.out or training.default_out(args.model, dataset)
    io.save(model.state_dict(), out, metadata={"model": args.model, "dataset": dataset})
    print(f"saved weights to {out}", flush=True)
    if args.plot:
        from cnnrs._plot import plot_history

        plot_history(history, args.plot, title=f"{args.model} on {dataset}")
        print(f"saved curves to {args.plot}", flush=True)
    result.update(epochs=epochs, accuracy=round(test["accuracy"], 4),
                  test_loss=round(test["loss"], 4), seconds=round(seconds, 2),
                  seconds_per_epoch=round(sum(epoch_seconds) / max(len(epoch_seconds), 1), 2),
                  train_samples=len(ytr), test_samples=len(yte), weights=out)
    if args.plot:
        result["plot"] = args.plot
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
