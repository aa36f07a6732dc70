"""U-Net: parameter count and state_dict keys/shapes equal to the PyTorch twin
written in its docstring, the paper's 572 -> 388 geometry, 'same' padding at
any size, both up-sampling modes, summary, and a seeded training step that
lowers the loss."""

import numpy as np
import pytest

import cnnrs
from cnnrs import models
from cnnrs.optim import Adam
from cnnrs.training import segmentation_loss


def count(model):
    return sum(p.numel() for p in model.parameters())


def twin_keys(in_channels=1, num_classes=2, base_width=64, depth=4, up="transpose",
              batch_norm=False):
    """The state_dict of the PyTorch twin in UNet's docstring, written from
    that source structure (double_conv Sequentials, ModuleLists, head)."""
    w = [base_width * 2**i for i in range(depth + 1)]

    def double(prefix, a, b):
        keys = []
        for j, (ci, co) in enumerate(((a, b), (b, b))):
            i = 3 * j if batch_norm else 2 * j
            keys.append((f"{prefix}.{i}.weight", (co, ci, 3, 3)))
            if batch_norm:
                keys += [(f"{prefix}.{i + 1}.{n}", (co,))
                         for n in ("weight", "bias", "running_mean", "running_var")]
                keys.append((f"{prefix}.{i + 1}.num_batches_tracked", ()))
            else:
                keys.append((f"{prefix}.{i}.bias", (co,)))
        return keys

    keys = []
    for i in range(depth):
        keys += double(f"encoder.{i}", in_channels if i == 0 else w[i - 1], w[i])
    keys += double("bottleneck", w[depth - 1], w[depth])
    for j, i in enumerate(reversed(range(depth))):
        if up == "transpose":
            keys += [(f"upsample.{j}.weight", (w[i + 1], w[i], 2, 2)),
                     (f"upsample.{j}.bias", (w[i],))]
        else:
            keys += [(f"upsample.{j}.1.weight", (w[i], w[i + 1], 1, 1)),
                     (f"upsample.{j}.1.bias", (w[i],))]
    for j, i in enumerate(reversed(range(depth))):
        keys += double(f"decoder.{j}", 2 * w[i], w[i])
    return keys + [("head.weight", (num_classes, w[0], 1, 1)), ("head.bias", (num_classes,))]


def test_default_parameter_count_is_the_pytorch_twins():
    model = models.get_model("unet")
    assert count(model) == 31_030_658
    assert sorted((k, tuple(v.shape)) for k, v in model.state_dict().items()) == \
        sorted(twin_keys())


@pytest.mark.parametrize("kwargs", [
    dict(base_width=16), dict(base_width=8, batch_norm=True), dict(base_width=8, up="bilinear"),
    dict(in_channels=3, num_classes=5, base_width=4, depth=2, batch_norm=True, up="bilinear"),
])
def test_state_dict_matches_twin(kwargs):
    model = models.unet(**kwargs)
    got = sorted((k, tuple(np.shape(v))) for k, v in model.state_dict().items())
    assert got == sorted(twin_keys(**kwargs))
    n = sum(int(np.prod(s)) for k, s in twin_keys(**kwargs)
            if "running" not in k and "num_batches" not in k)
    assert count(model) == n


def test_valid_padding_maps_572_to_388():
    model = models.unet(padding="valid")
    assert model.output_size(572, 572) == (388, 388)
    with cnnrs.no_grad():
        y = model(cnnrs.zeros(1, 1, 572, 572))
    assert y.shape == (1, 2, 388, 388)


@pytest.mark.parametrize("h,w", [(188, 188), (204, 220), (205, 219)])
def test_valid_padding_output_size_formula(h, w):
    model = models.unet(base_width=2, padding="valid")
    with cnnrs.no_grad():
        y = model(cnnrs.zeros(1, 1, h, w))
    assert y.shape[2:] == model.output_size(h, w)
    with pytest.raises(ValueError, match="unet: input size 100 is too small"):
        model.output_size(100, 100)


@pytest.mark.parametrize("up", ["transpose", "bilinear"])
@pytest.mark.parametrize("hw", [(64, 64), (37, 50), (16, 23)])
def test_same_padding_keeps_the_size(up, hw):
    model = models.unet(base_width=4, up=up, batch_norm=True)
    with cnnrs.no_grad():
        y = model(cnnrs.randn(2, 1, *hw))
    assert y.shape == (2, 2) + hw
    assert model.output_size(*hw) == hw


def test_bad_arguments():
    with pytest.raises(ValueError, match="unet: padding must be 'same' or 'valid'"):
        models.unet(padding="full")
    with pytest.raises(ValueError, match="unet: up must be"):
        models.unet(up="nearest")
    with pytest.raises(ValueError, match="unet: base_width must be a positive int"):
        models.unet(base_width=0)
    with pytest.raises(ValueError, match="unet: input size 8 is too small for depth 4"):
        models.unet(base_width=2).output_size(8, 64)


def test_weights_port_through_the_state_dict():
    a = models.unet(base_width=4, batch_norm=True)
    b = models.unet(base_width=4, batch_norm=True)
    b.load_state_dict(a.state_dict())
    x = cnnrs.randn(1, 1, 32, 32)
    a.eval()
    b.eval()
    with cnnrs.no_grad():
        np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


@pytest.mark.parametrize("up,bn", [("transpose", True), ("bilinear", False)])
def test_a_seeded_training_step_lowers_the_loss_and_reaches_every_parameter(up, bn):
    cnnrs.manual_seed(0)
    model = models.unet(base_width=4, depth=3, up=up, batch_norm=bn)
    x, y = cnnrs.data.synthetic_cells(4, size=32, seed=1)
    x = (x - x.mean()) / x.std()
    opt = Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(6):
        loss = segmentation_loss(model(cnnrs.tensor(x)), y, "ce+dice")
        opt.zero_grad()
        loss.backward()
        if step == 0:
            assert all(p.grad is not None for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


def test_summary_of_unet():
    s = models.summary(models.unet(base_width=16), (1, 1, 128, 128))
    assert s.total_params == 1_940_834
    ups = [r for r in s.rows if r.kind == "ConvTranspose2d"]
    assert len(ups) == 4 and all(r.flops > 0 for r in ups)
    # 2x2 stride-2 up-convolutions: 2 * (input pixels) * C_out * 4 each.
    assert ups[0].flops == 2 * (256 * 8 * 8) * 128 * 4
    # Receptive field of the depth-4 U-Net: 1 + 184 (the valid-padding
    # border) + 15 (the pools) = 200.
    assert s.rows[-1].receptive_field == 200


def test_summary_cli_unet(capsys):
    from cnnrs import cli

    assert cli.main(["summary", "unet", "--input-shape", "1,1,572,572"]) == 0
    assert "31,030,658 parameters" in capsys.readouterr().out
