"""U-Net (Ronneberger, Fischer & Brox 2015) for image segmentation."""

from __future__ import annotations

from .. import nn
from .._ops import cat
from ..nn import functional as F

__all__ = ["UNet", "unet"]

_PADDINGS = ("same", "valid")
_UPS = ("transpose", "bilinear")


def _double_conv(c_in: int, c_out: int, padding: str, batch_norm: bool) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by (batch norm and) ReLU. Without
    batch norm, ``Sequential`` runs each conv + ReLU as one fused kernel."""
    layers = []
    for a, b in ((c_in, c_out), (c_out, c_out)):
        layers.append(nn.Conv2d(a, b, 3, padding=padding, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(b))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net: a contracting path of ``depth`` levels (two 3x3 conv + ReLU,
    then 2x2 max pooling), a bottleneck (two 3x3 conv + ReLU), and an
    expanding path that per level up-samples by 2 while halving the channels,
    concatenates the skip connection of the same level (centre-cropped to
    the up-sampled size with ``padding='valid'``), and applies two 3x3 conv
    + ReLU; a final 1x1 convolution gives per-pixel class logits.

    Args:
        in_channels: image channels (1 for grey-level microscopy).
        num_classes: output channels (logits per class; 2 for
            background/foreground with ``cross_entropy``, or 1 with
            ``binary_cross_entropy_with_logits``).
        base_width: channels of the first level (64 in the paper); level
            ``i`` has ``base_width * 2**i``.
        depth: number of pooling steps (4 in the paper).
        padding: ``'same'`` (3x3 convs zero-padded: the output has the
            input's size) or ``'valid'`` (unpadded, as in the paper: each conv
            removes a 2-pixel border and the skips are cropped).
        up: ``'transpose'`` (2x2 transposed convolution with stride 2, the
            paper's "up-convolution") or ``'bilinear'`` (bilinear upsampling
            by 2, ``align_corners=False``, followed by a 1x1 convolution that
            halves the channels; fewer parameters, no checkerboard
            artefacts).
        batch_norm: batch norm after every 3x3 conv (then those convs have no
            bias, since the norm's shift replaces it).

    Shape:
        input ``(N, in_channels, H, W)`` -> logits ``(N, num_classes, H_out,
        W_out)``. ``'same'``: ``H_out = H`` (when ``H`` is not a multiple of
        ``2**depth`` the up-sampled maps are zero-padded at the bottom/right
        to their skip's size). ``'valid'``: with ``depth = 4``, ``H_out = H -
        184`` when ``H - 124`` is a multiple of 16 (572 -> 388 as in the
        paper); other sizes lose more border.

    Parameters: 31,030,658 with the defaults (1 input channel, 2 classes,
    base 64, depth 4, transpose, bias, no batch norm), the PyTorch twin's
    count; 1,940,834 with ``base_width=16``.

    The PyTorch twin (same state_dict keys and shapes, so weights port in both
    directions)::

        def double_conv(c_in, c_out, padding, bn):
            layers = []
            for a, b in ((c_in, c_out), (c_out, c_out)):
                layers.append(nn.Conv2d(a, b, 3, padding=padding, bias=not bn))
                if bn:
                    layers.append(nn.BatchNorm2d(b))
                layers.append(nn.ReLU(inplace=True))
            return nn.Sequential(*layers)

        class UNet(nn.Module):
            def __init__(self, in_channels=1, num_classes=2, base_width=64, depth=4,
                         padding="same", up="transpose", batch_norm=False):
                super().__init__()
                w = [base_width * 2**i for i in range(depth + 1)]
                self.padding = padding
                self.encoder = nn.ModuleList(
                    [double_conv(in_channels if i == 0 else w[i - 1], w[i], padding,
                                 batch_norm) for i in range(depth)])
                self.pool = nn.MaxPool2d(2)
                self.bottleneck = double_conv(w[depth - 1], w[depth], padding, batch_norm)
                self.upsample = nn.ModuleList(
                    [nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) if up == "transpose"
                     else nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear",
                                                    align_corners=False),
                                        nn.Conv2d(w[i + 1], w[i], 1))
                     for i in reversed(range(depth))])
                self.decoder = nn.ModuleList(
                    [double_conv(2 * w[i], w[i], padding, batch_norm)
                     for i in reversed(range(depth))])
                self.head = nn.Conv2d(w[0], num_classes, 1)

            def forward(self, x):
                skips = []
                for block in self.encoder:
                    x = block(x)
                    skips.append(x)
                    x = self.pool(x)
                x = self.bottleneck(x)
                for up, block, skip in zip(self.upsample, self.decoder, reversed(skips)):
                    x = up(x)
                    if self.padding == "valid":
                        skip = torchvision.transforms.functional.center_crop(
                            skip, list(x.shape[-2:]))   # same offsets for even margins
                    else:
                        dh, dw = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
                        x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
                    x = block(torch.cat([skip, x], dim=1))
                return self.head(x)

    Keys, e.g. without batch norm: ``encoder.0.0.weight``, ``encoder.0.2.bias``,
    ``bottleneck.0.weight``, ``upsample.0.weight`` (``upsample.0.1.weight``
    with ``up='bilinear'``), ``decoder.3.2.weight``, ``head.bias``; with batch
    norm the ReLUs move to indices 2 and 5 and the norms sit at 1 and 4.

    Raises:
        ValueError: unknown ``padding``/``up``, non-positive sizes.

    Example:
        >>> model = cnnrs.models.unet(base_width=16, batch_norm=True)
        >>> model(cnnrs.zeros(1, 1, 128, 128)).shape
        (1, 2, 128, 128)
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_width: int = 64,
                 depth: int = 4, padding: str = "same", up: str = "transpose",
                 batch_norm: bool = False):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("num_classes", num_classes),
                        ("base_width", base_width), ("depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"unet: {name} must be a positive int, got {v!r}")
        if padding not in _PADDINGS:
            raise ValueError(f"unet: padding must be 'same' or 'valid', got {padding!r}")
        if up not in _UPS:
            raise ValueError(f"unet: up must be 'transpose' or 'bilinear', got {up!r}")
        w = [base_width * 2**i for i in range(depth + 1)]
        self.in_channels, self.num_classes = in_channels, num_classes
        self.base_width, self.depth = base_width, depth
        self.padding, self.up, self.batch_norm = padding, up, bool(batch_norm)
        self.encoder = nn.ModuleList([
            _double_conv(in_channels if i == 0 else w[i - 1], w[i], padding, batch_norm)
            for i in range(depth)])
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _double_conv(w[depth - 1], w[depth], padding, batch_norm)
        ups = []
        for i in reversed(range(depth)):
            if up == "transpose":
                ups.append(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2))
            else:
                ups.append(nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(w[i + 1], w[i], 1)))
        self.upsample = nn.ModuleList(ups)
        self.decoder = nn.ModuleList([_double_conv(2 * w[i], w[i], padding, batch_norm)
                                      for i in reversed(range(depth))])
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x):
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, block, skip in zip(self.upsample, self.decoder, reversed(skips)):
            x = up(x)
            (sh, sw), (xh, xw) = skip.shape[2:], x.shape[2:]
            if self.padding == "valid":
                if (sh, sw) != (xh, xw):
                    skip = F.center_crop(skip, (xh, xw))
            elif (sh, sw) != (xh, xw):
                dh, dw = sh - xh, sw - xw
                x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
            x = block(cat([skip, x], dim=1))
        return self.head(x)

    def output_size(self, h: int, w: int) -> tuple:
        """The ``(H_out, W_out)`` of an ``(H, W)`` input (without running it).

        Raises:
            ValueError: an input too small for the network (``'valid'``).
        """
        def one(n: int) -> int:
            n0, skips = n, []
            for _ in range(self.depth):
                n = n - 4 if self.padding == "valid" else n
                skips.append(n)
                n //= 2
                if n < 1:
                    raise ValueError(f"unet: input size {n0} is too small for depth "
                                     f"{self.depth} (a pooled map would be empty)")
            n = n - 4 if self.padding == "valid" else n
            for s in reversed(skips):
                n *= 2
                if self.padding == "valid":
                    if n > s or n - 4 < 1:
                        raise ValueError(f"unet: input size {n0} is too small for "
                                         f"padding='valid' and depth {self.depth}")
                    n -= 4
                else:
                    n = s
            if n < 1:
                raise ValueError(f"unet: input size {n0} is too small for depth {self.depth}")
            return n

        return one(int(h)), one(int(w))

    def extra_repr(self) -> str:
        return (f"base_width={self.base_width}, depth={self.depth}, padding={self.padding!r}, "
                f"up={self.up!r}, batch_norm={self.batch_norm}")


def unet(in_channels: int = 1, num_classes: int = 2, base_width: int = 64, depth: int = 4,
         padding: str = "same", up: str = "transpose", batch_norm: bool = False) -> UNet:
    """A :class:`UNet` (31,030,658 parameters with the defaults).

    Example:
        >>> model = cnnrs.models.unet(padding="valid")
        >>> model(cnnrs.zeros(1, 1, 572, 572)).shape
        (1, 2, 388, 388)
    """
    return UNet(in_channels=in_channels, num_classes=num_classes, base_width=base_width,
                depth=depth, padding=padding, up=up, batch_norm=batch_norm)
