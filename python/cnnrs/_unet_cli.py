"""``cnnrs train|eval|predict unet``: segmentation from the command line.

Data (``--data-dir``):
- none: synthetic cell-like blobs (:func:`cnnrs.data.synthetic_cells`),
  training and validation sets drawn with different seeds;
- a folder with ``img2d.tif`` and ``mask2d.tif`` (the nuclei pair): random
  crops from the left three quarters, validation on the right quarter;
- a folder with ``images/`` and ``masks/`` (optionally ``val/images`` and
  ``val/masks``; otherwise the last 20% of the pairs by name are held out,
  or, for a single pair, its right quarter as for the nuclei).

Masks are label images; with two classes (the default) labels > 0 are the
foreground. Weights are saved with their configuration (architecture,
intensity normalisation) in the safetensors metadata, which ``predict`` and
``eval`` read back.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict, List, Tuple

import numpy as np

# Defaults of `cnnrs train unet` by data source: (epochs, steps per epoch,
# batch size, crop, learning rate).
_DEFAULTS = {
    "synthetic": (4, 25, 8, 96, 2e-3),
    "nuclei": (4, 25, 8, 128, 2e-3),
    "folders": (10, 50, 8, 128, 1e-3),
}
_ARCH = {"base_width": 16, "depth": 4, "padding": "same", "up": "transpose",
         "batch_norm": True}


def add_arguments(tr) -> None:
    """The segmentation options of ``train`` and ``eval``."""
    g = tr.add_argument_group("segmentation (model unet)")
    g.add_argument("--crop", type=int, default=None, help="training crop size (pixels)")
    g.add_argument("--steps", type=int, default=None, help="training steps per epoch")
    g.add_argument("--base-width", type=int, default=None,
                   help=f"channels of the first level (default {_ARCH['base_width']})")
    g.add_argument("--depth", type=int, default=None,
                   help=f"pooling levels (default {_ARCH['depth']})")
    g.add_argument("--padding", choices=["same", "valid"], default=None)
    g.add_argument("--up", choices=["transpose", "bilinear"], default=None)
    g.add_argument("--batch-norm", action=_bool_action(), default=None,
                   help="batch norm after each 3x3 conv (default on)")
    g.add_argument("--num-classes", type=int, default=None,
                   help="classes (default 2: background/foreground)")
    g.add_argument("--loss", choices=["ce", "dice", "ce+dice"], default="ce+dice")
    g.add_argument("--weight-map", action="store_true",
                   help="weight the cross-entropy with the U-Net paper's border weight map "
                        "(computed from instance label masks: one label per object)")
    g.add_argument("--no-augment", action="store_true",
                   help="no random flips and 90-degree rotations of the crops")
    g.add_argument("--synthetic-images", type=int, default=48,
                   help="training images of the synthetic default data")


def _bool_action():
    import argparse

    return argparse.BooleanOptionalAction


def _fail(msg: str) -> int:
    print(f"cnnrs: {msg}", file=sys.stderr)
    return 2


# --- data ------------------------------------------------------------------------------------


def prepare(args, num_classes: int) -> Dict[str, object]:
    """Training images/masks (lists), validation images/masks, both
    standardised with the training images' mean and std (returned too, for
    the saved configuration), and a description, by data source."""
    from cnnrs import data

    d = args.data_dir
    if d is None:
        size = args.crop or _DEFAULTS["synthetic"][3]
        xt, yt = data.synthetic_cells(args.synthetic_images, size=size, seed=args.seed,
                                      instances=True)
        xv, yv = data.synthetic_cells(8, size=size, seed=args.seed + 10_000)
        mean, std = float(xt.mean()), float(xt.std()) + 1e-8
        wmaps = list(data.unet_weight_map(yt)) if getattr(args, "weight_map", False) else None
        yt = (yt > 0).astype(np.int64)
        return {"source": "synthetic", "train": ([(v - mean) / std for v in xt], list(yt), wmaps),
                "val": ([(v - mean) / std for v in xv], list(yv)), "mean": mean, "std": std,
                "split": (f"synthetic cells: {len(xt)} train / {len(xv)} validation images of "
                          f"{size}x{size} (seeds {args.seed} / {args.seed + 10_000})")}
    if not os.path.isdir(d):
        raise FileNotFoundError(f"--data-dir {d} is not a folder")
    if os.path.exists(os.path.join(d, "img2d.tif")) and \
            os.path.exists(os.path.join(d, "mask2d.tif")):
        s = data.nuclei_split(d)
        wmaps = None
        if getattr(args, "weight_map", False):
            wmaps = [data.unet_weight_map(s["train_labels"])]
        return {"source": "nuclei", "train": ([s["train_image"]], [s["train_mask"]], wmaps),
                "val": ([s["val_image"]], [s["val_mask"]]), "mean": s["mean"], "std": s["std"],
                "split": s["split"]}
    img_dir, mask_dir = os.path.join(d, "images"), os.path.join(d, "masks")
    if not (os.path.isdir(img_dir) and os.path.isdir(mask_dir)):
        raise FileNotFoundError(
            f"--data-dir {d}: expected img2d.tif + mask2d.tif (the nuclei pair) or the folders "
            "images/ and masks/ (optionally val/images and val/masks)")
    full = data.SegmentationDataset.from_folders(img_dir, mask_dir)
    images, labels = full.images, full.masks
    vdir = os.path.join(d, "val")
    if os.path.isdir(os.path.join(vdir, "images")):
        v = data.SegmentationDataset.from_folders(os.path.join(vdir, "images"),
                                                   os.path.join(vdir, "masks"))
        tr_i, tr_m, va_i, va_m = images, labels, v.images, v.masks
        split = f"folders: {len(tr_i)} train pairs, {len(va_i)} validation pairs (val/)"
    elif len(images) == 1:
        w = images[0].shape[2]
        cut = int(round(w * 0.75))
        tr_i, tr_m = [images[0][:, :, :cut]], [labels[0][:, :cut]]
        va_i, va_m = [images[0][:, :, cut:]], [labels[0][:, cut:]]
        split = (f"folders: one pair; train on columns 0..{cut - 1}, validate on columns "
                 f"{cut}..{w - 1}")
    else:
        n_val = max(1, len(images) // 5)
        tr_i, tr_m = images[:-n_val], labels[:-n_val]
        va_i, va_m = images[-n_val:], labels[-n_val:]
        split = (f"folders: {len(tr_i)} train pairs, the last {n_val} (by name) held out for "
                 "validation")
    wmaps = None
    if getattr(args, "weight_map", False):  # from the labels as given (instances)
        wmaps = [data.unet_weight_map(m) for m in tr_m]
    if num_classes == 2:
        tr_m = [(m > 0).astype(np.int64) for m in tr_m]
        va_m = [(m > 0).astype(np.int64) for m in va_m]
    pix = np.concatenate([im.reshape(im.shape[0], -1) for im in tr_i], axis=1)
    mean, std = float(pix.mean()), float(pix.std()) + 1e-8
    return {"source": "folders", "train": ([(v - mean) / std for v in tr_i], list(tr_m), wmaps),
            "val": ([(v - mean) / std for v in va_i], list(va_m)), "mean": mean, "std": std,
            "split": split}


# --- model config --------------------------------------------------------------------------


def _config(args, in_channels: int, num_classes: int) -> Dict[str, object]:
    cfg = dict(_ARCH)
    for k in ("base_width", "depth", "padding", "up", "batch_norm"):
        v = getattr(args, k, None)
        if v is not None:
            cfg[k] = v
    cfg["in_channels"], cfg["num_classes"] = in_channels, num_classes
    return cfg


def _build(cfg: Dict[str, object]):
    from cnnrs import models

    keys = ("in_channels", "num_classes", "base_width", "depth", "padding", "up", "batch_norm")
    return models.unet(**{k: cfg[k] for k in keys})


def _load(weights: str) -> Tuple[object, Dict[str, object]]:
    """A U-Net and its saved configuration from a weights file."""
    from cnnrs import io

    meta = io.load_metadata(weights)
    if "unet_config" in meta:
        cfg = json.loads(meta["unet_config"])
    else:  # weights from elsewhere: infer what the keys tell, assume 'same'
        sd = io.load(weights, as_numpy=True)
        w0 = sd["encoder.0.0.weight"]
        cfg = dict(_ARCH, base_width=int(w0.shape[0]), in_channels=int(w0.shape[1]),
                   depth=sum(1 for k in sd if k.startswith("encoder.") and k.endswith(".0.weight")),
                   batch_norm="encoder.0.1.running_mean" in sd,
                   up="transpose" if "upsample.0.weight" in sd else "bilinear",
                   num_classes=int(sd["head.weight"].shape[0]), mean=0.0, std=1.0)
    model = _build(cfg)
    model.load_state_dict(io.load(weights))
    model.eval()
    return model, cfg


# --- train ---------------------------------------------------------------------------------


def train(args) -> int:
    import cnnrs
    from cnnrs import io, training
    from cnnrs.data import DataLoader, SegmentationDataset
    from cnnrs.optim import SGD, Adam, AdamW
    from cnnrs.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR

    num_classes = args.num_classes or 2
    if num_classes < 2:
        return _fail("unet: --num-classes must be at least 2 (class 0 is the background)")
    cnnrs.manual_seed(args.seed)
    try:
        d = prepare(args, num_classes)
    except (ValueError, FileNotFoundError, ImportError, TypeError) as e:
        return _fail(str(e))
    source = d["source"]
    epochs_d, steps_d, batch_d, crop_d, lr_d = _DEFAULTS[source]
    epochs = args.epochs if args.epochs is not None else epochs_d
    steps = args.steps or steps_d
    batch = args.batch_size or batch_d
    crop = args.crop or crop_d
    lr = args.lr or lr_d
    wd = args.weight_decay if args.weight_decay is not None else 0.0
    tr_images, tr_masks, wmaps = d["train"]
    try:
        ds = SegmentationDataset(tr_images, tr_masks, crop_size=crop,
                                 flip=not args.no_augment, rot90=not args.no_augment,
                                 samples_per_epoch=steps * batch, seed=args.seed,
                                 weight_maps=wmaps)
        cfg = _config(args, ds.channels, num_classes)
        model = _build(cfg)
        model.output_size(crop, crop)
    except (ValueError, TypeError) as e:
        return _fail(str(e))
    print(d["split"], flush=True)
    optimizer = args.optimizer or "adam"
    if optimizer == "sgd":
        opt = SGD(model.parameters(), lr=lr, momentum=args.momentum, weight_decay=wd)
    else:
        opt = (Adam if optimizer == "adam" else AdamW)(model.parameters(), lr=lr,
                                                       weight_decay=wd)
    loader = DataLoader(ds, batch_size=batch, shuffle=False, drop_last=True)
    total_steps = max(epochs * len(loader), 1)
    sched = None
    if args.schedule == "cosine":
        sched = CosineAnnealingLR(opt, T_max=total_steps)
    elif args.schedule == "onecycle":
        sched = OneCycleLR(opt, max_lr=lr, total_steps=total_steps)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"training unet ({n_params:,} parameters; base width {cfg['base_width']}, depth "
          f"{cfg['depth']}, padding {cfg['padding']}, up {cfg['up']}, batch norm "
          f"{'on' if cfg['batch_norm'] else 'off'}) for {epochs} epochs of {len(loader)} steps, "
          f"batch {batch} crops of {crop}x{crop}, {optimizer} lr {lr} wd {wd}, schedule "
          f"{args.schedule}, loss {args.loss}{' + weight map' if wmaps else ''}, augmentation: "
          f"{'none' if args.no_augment else 'crop, flips, 90-degree rotations'}, "
          f"{cnnrs.get_num_threads()} threads", flush=True)
    val_images, val_masks = d["val"]
    t0 = time.perf_counter()
    history: List[dict] = []
    epoch_seconds = []
    m = {"dice": float("nan"), "iou": float("nan")}
    for epoch in range(1, epochs + 1):
        te = time.perf_counter()
        tr = training.train_segmentation_epoch(model, loader, opt, loss=args.loss,
                                               desc=f"epoch {epoch}/{epochs}",
                                               schedule=sched.step if sched else None)
        train_s = time.perf_counter() - te
        m = training.evaluate_segmentation(model, val_images, val_masks, num_classes)
        epoch_seconds.append(train_s)
        history.append({"epoch": epoch, "train_loss": tr["loss"], "val_dice": m["dice"],
                        "val_iou": m["iou"]})
        print(f"epoch {epoch}/{epochs}  loss {tr['loss']:.4f}  "
              f"train_pixel_acc {tr['pixel_accuracy']:.4f}  val_dice {m['dice']:.4f}  "
              f"val_iou {m['iou']:.4f}  ({train_s:.1f} s train, "
              f"{time.perf_counter() - te - train_s:.1f} s eval)", flush=True)
    seconds = time.perf_counter() - t0
    out = args.out or os.path.join(os.getcwd(), f"unet-{source}.safetensors")
    cfg_saved = dict(cfg, mean=d["mean"], std=d["std"])
    io.save(model.state_dict(), out, metadata={
        "model": "unet", "dataset": source, "unet_config": json.dumps(cfg_saved)})
    print(f"saved weights to {out}", flush=True)
    if args.plot:
        from cnnrs._plot import plot_segmentation_history

        try:
            plot_segmentation_history(history, args.plot, title=f"unet on {source}")
        except OSError as e:
            return _fail(f"cannot write {args.plot}: {e}")
        print(f"saved curves to {args.plot}", flush=True)
    result = {"model": "unet", "dataset": source, "epochs": epochs, "steps": epochs * len(loader),
              "batch_size": batch, "crop": crop, "dice": round(m["dice"], 4),
              "iou": round(m["iou"], 4), "dice_per_class": m["dice_per_class"],
              "iou_per_class": m["iou_per_class"],
              "pixel_accuracy": round(m["pixel_accuracy"], 4), "seconds": round(seconds, 2),
              "seconds_per_epoch": round(sum(epoch_seconds) / max(len(epoch_seconds), 1), 2),
              "parameters": n_params, "train_crops": epochs * len(loader) * batch,
              "val_pixels": int(sum(np.asarray(v).size for v in val_masks)),
              "config": cfg, "weights": out}
    if args.plot:
        result["plot"] = args.plot
    print(json.dumps(result))
    return 0


def evaluate(args) -> int:
    """``cnnrs eval unet --weights W [--data-dir D]``: validation scores."""
    from cnnrs import training

    try:
        model, cfg = _load(args.weights)
    except (ValueError, OSError, KeyError) as e:
        return _fail(f"cannot load {args.weights}: {e}")
    args.weight_map = False
    try:
        d = prepare(args, int(cfg["num_classes"]))
    except (ValueError, FileNotFoundError, ImportError, TypeError) as e:
        return _fail(str(e))
    print(d["split"], flush=True)
    # Validation images are normalised with the saved statistics.
    mean, std = float(cfg.get("mean", d["mean"])), float(cfg.get("std", d["std"]))
    imgs = [np.asarray(v) * d["std"] + d["mean"] for v in d["val"][0]]
    imgs = [((v - mean) / std).astype(np.float32) for v in imgs]
    t0 = time.perf_counter()
    m = training.evaluate_segmentation(model, imgs, d["val"][1], int(cfg["num_classes"]))
    print(json.dumps({"model": "unet", "dataset": d["source"], "dice": round(m["dice"], 4),
                      "iou": round(m["iou"], 4), "dice_per_class": m["dice_per_class"],
                      "iou_per_class": m["iou_per_class"],
                      "seconds": round(time.perf_counter() - t0, 2), "weights": args.weights}))
    return 0


# --- predict -------------------------------------------------------------------------------


def _grey_u8(img: np.ndarray) -> np.ndarray:
    """(C, H, W) intensities to (H, W, 3) uint8, 1st..99.5th percentile."""
    g = img.mean(axis=0) if img.shape[0] != 3 else None
    if g is None:
        lo, hi = np.percentile(img, [1, 99.5])
        rgb = np.moveaxis(img, 0, -1)
    else:
        lo, hi = np.percentile(g, [1, 99.5])
        rgb = np.repeat(g[..., None], 3, axis=2)
    return (np.clip((rgb - lo) / max(hi - lo, 1e-8), 0, 1) * 255).astype(np.uint8)


_PALETTE = np.array([[0, 0, 0], [255, 255, 255], [230, 25, 75], [60, 180, 75], [255, 225, 25],
                     [0, 130, 200], [245, 130, 48], [145, 30, 180]], np.uint8)


def _mask_u8(mask: np.ndarray) -> np.ndarray:
    """Labels to colours: background black, class 1 white, others a palette."""
    return _PALETTE[np.asarray(mask) % len(_PALETTE)]


def predict(args) -> int:
    """``cnnrs predict unet --weights W --input IMG [--mask GT] --out PNG``."""
    from cnnrs import metrics, training
    from cnnrs._plot import segmentation_panel, write_png
    from cnnrs.data import read_image

    try:
        model, cfg = _load(args.weights)
    except (ValueError, OSError, KeyError) as e:
        return _fail(f"cannot load {args.weights}: {e}")
    try:
        raw = read_image(args.input)
        gt = read_image(args.mask) if args.mask else None
    except (ValueError, FileNotFoundError, ImportError) as e:
        return _fail(str(e))
    img = raw.astype(np.float32)
    img = img[None] if img.ndim == 2 else np.moveaxis(img[..., :3], -1, 0)
    c_in = int(cfg["in_channels"])
    if img.shape[0] != c_in:
        if c_in == 1:
            img = img.mean(axis=0, keepdims=True)
        else:
            return _fail(f"{args.input} has {img.shape[0]} channels but the model expects {c_in}")
    if gt is not None:
        gt = gt[..., 0] if gt.ndim == 3 else gt
        if gt.shape != img.shape[1:]:
            return _fail(f"mask {args.mask} is {gt.shape} but the image is {img.shape[1:]}")
        gt = gt.astype(np.int64)
        if int(cfg["num_classes"]) == 2:
            gt = (gt > 0).astype(np.int64)
    x = (img - float(cfg.get("mean", 0.0))) / float(cfg.get("std", 1.0))
    t0 = time.perf_counter()
    try:
        scores = training.predict_segmentation(model, x.astype(np.float32))
    except ValueError as e:
        return _fail(str(e))
    seconds = time.perf_counter() - t0
    pred = scores.argmax(0)
    panels = [("(a) input", _grey_u8(img))]
    result = {"model": "unet", "input": args.input, "size": list(pred.shape),
              "foreground_fraction": round(float((pred > 0).mean()), 4),
              "seconds": round(seconds, 3)}
    title = "(c) prediction" if gt is not None else "(b) prediction"
    if gt is not None:
        panels.append(("(b) ground truth", _mask_u8(gt)))
        d = metrics.dice(pred, gt, num_classes=int(cfg["num_classes"]))
        j = metrics.iou(pred, gt, num_classes=int(cfg["num_classes"]))
        dice = float(np.nanmean(d[1:]))
        result.update(dice=round(dice, 4), iou=round(float(np.nanmean(j[1:])), 4))
        title += f"  dice {dice:.3f}"
    panels.append((title, _mask_u8(pred)))
    out = args.out
    try:
        write_png(out, segmentation_panel(panels))
    except OSError as e:
        return _fail(f"cannot write {out}: {e}")
    result["out"] = out
    print(json.dumps(result))
    return 0
