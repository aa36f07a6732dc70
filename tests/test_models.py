"""Models: parameter counts and state_dict keys/shapes equal to the PyTorch
twins (torchvision for AlexNet/ResNet), output shapes, and a seeded training
step that lowers the loss."""

import numpy as np
import pytest

import cnnrs
import cnnrs.nn.functional as F
from cnnrs import models
from cnnrs.optim import SGD


def count(model):
    return sum(p.numel() for p in model.parameters())


# Published counts: torchvision's model docs (1000 classes), LeNet-5 twin
# documented in cnnrs.models.lenet, CIFAR ResNet-20 with option-A shortcuts
# (He et al. 2016: 0.27M).
@pytest.mark.parametrize("name,n", [
    ("lenet5", 61_706), ("alexnet", 61_100_840), ("resnet18", 11_689_512),
    ("resnet34", 21_797_672), ("resnet50", 25_557_032), ("resnet101", 44_549_160),
    ("resnet152", 60_192_808), ("resnet20", 269_722), ("resnet32", 464_154),
    ("resnet44", 658_586), ("resnet56", 853_018),
])
def test_parameter_counts(name, n):
    assert count(models.get_model(name)) == n


def torchvision_resnet_keys(blocks, bottleneck):
    """torchvision's ResNet state_dict layout, written from its source
    structure (conv1/bn1, layerK.I.{conv,bn}J, layerK.0.downsample.{0,1}, fc)."""
    def bn(prefix, c):
        return [(f"{prefix}.weight", (c,)), (f"{prefix}.bias", (c,)),
                (f"{prefix}.running_mean", (c,)), (f"{prefix}.running_var", (c,)),
                (f"{prefix}.num_batches_tracked", ())]

    keys = [("conv1.weight", (64, 3, 7, 7))] + bn("bn1", 64)
    inplanes = 64
    exp = 4 if bottleneck else 1
    for li, (planes, nb) in enumerate(zip((64, 128, 256, 512), blocks), 1):
        for b in range(nb):
            p = f"layer{li}.{b}"
            stride = 2 if li > 1 and b == 0 else 1
            if bottleneck:
                keys += [(f"{p}.conv1.weight", (planes, inplanes, 1, 1))] + bn(f"{p}.bn1", planes)
                keys += [(f"{p}.conv2.weight", (planes, planes, 3, 3))] + bn(f"{p}.bn2", planes)
                keys += [(f"{p}.conv3.weight", (planes * 4, planes, 1, 1))] \
                    + bn(f"{p}.bn3", planes * 4)
            else:
                keys += [(f"{p}.conv1.weight", (planes, inplanes, 3, 3))] + bn(f"{p}.bn1", planes)
                keys += [(f"{p}.conv2.weight", (planes, planes, 3, 3))] + bn(f"{p}.bn2", planes)
            if b == 0 and (stride != 1 or inplanes != planes * exp):
                keys += [(f"{p}.downsample.0.weight", (planes * exp, inplanes, 1, 1))] \
                    + bn(f"{p}.downsample.1", planes * exp)
            inplanes = planes * exp
    return keys + [("fc.weight", (1000, 512 * exp)), ("fc.bias", (1000,))]


ALEXNET_KEYS = [
    ("features.0.weight", (64, 3, 11, 11)), ("features.0.bias", (64,)),
    ("features.3.weight", (192, 64, 5, 5)), ("features.3.bias", (192,)),
    ("features.6.weight", (384, 192, 3, 3)), ("features.6.bias", (384,)),
    ("features.8.weight", (256, 384, 3, 3)), ("features.8.bias", (256,)),
    ("features.10.weight", (256, 256, 3, 3)), ("features.10.bias", (256,)),
    ("classifier.1.weight", (4096, 9216)), ("classifier.1.bias", (4096,)),
    ("classifier.4.weight", (4096, 4096)), ("classifier.4.bias", (4096,)),
    ("classifier.6.weight", (1000, 4096)), ("classifier.6.bias", (1000,)),
]


def state_layout(model):
    return [(k, tuple(np.shape(v.numpy() if hasattr(v, "numpy") else v)))
            for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name,blocks,bottleneck", [
    ("resnet18", [2, 2, 2, 2], False), ("resnet34", [3, 4, 6, 3], False),
    ("resnet50", [3, 4, 6, 3], True),
])
def test_resnet_state_dict_matches_torchvision(name, blocks, bottleneck):
    assert state_layout(models.get_model(name)) == torchvision_resnet_keys(blocks, bottleneck)


def test_alexnet_state_dict_matches_torchvision():
    assert state_layout(models.alexnet()) == ALEXNET_KEYS


def test_lenet_state_dict_matches_twin():
    assert state_layout(models.lenet5()) == [
        ("conv1.weight", (6, 1, 5, 5)), ("conv1.bias", (6,)),
        ("conv2.weight", (16, 6, 5, 5)), ("conv2.bias", (16,)),
        ("fc1.weight", (120, 400)), ("fc1.bias", (120,)),
        ("fc2.weight", (84, 120)), ("fc2.bias", (84,)),
        ("fc3.weight", (10, 84)), ("fc3.bias", (10,)),
    ]


@pytest.mark.parametrize("name,shape,classes", [
    ("lenet5", (2, 1, 32, 32), 10), ("resnet20", (2, 3, 32, 32), 10),
    ("resnet18", (1, 3, 64, 64), 7), ("alexnet", (1, 3, 70, 70), 5),
])
def test_output_shapes_and_grey_input(name, shape, classes):
    m = models.get_model(name, num_classes=classes).eval()
    with cnnrs.no_grad():
        assert m(cnnrs.randn(*shape)).shape == (shape[0], classes)
    grey = models.get_model(name, num_classes=classes, in_channels=1).eval()
    with cnnrs.no_grad():
        assert grey(cnnrs.randn(shape[0], 1, *shape[2:])).shape == (shape[0], classes)


@pytest.mark.parametrize("name,shape", [("lenet5", (16, 1, 32, 32)), ("resnet20", (8, 3, 32, 32))])
def test_a_seeded_training_step_lowers_the_loss(name, shape):
    cnnrs.manual_seed(0)
    model = models.get_model(name)
    rng = np.random.default_rng(0)
    x = cnnrs.tensor(rng.standard_normal(shape))
    y = rng.integers(0, 10, shape[0])
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_summary_totals_and_receptive_fields():
    s = models.summary(models.lenet5(), (1, 1, 32, 32))
    assert s.total_params == 61_706
    # conv1 2*6*28*28*25 + conv2 2*16*10*10*150 + fc 2*(400*120 + 120*84 + 84*10)
    assert s.total_flops == 235_200 + 480_000 + 2 * (48_000 + 10_080 + 840)
    assert [r.receptive_field for r in s.rows if r.kind == "Conv2d"] == [5, 14]
    assert "61,706 parameters" in str(s)
    r18 = models.summary(models.resnet18(), (1, 3, 224, 224))
    assert r18.total_params == 11_689_512
    assert abs(r18.total_flops / 2 - 1.814e9) < 0.01e9  # the published 1.8 GMACs
    assert max(r.receptive_field for r in r18.rows) == 435
    assert max(r.receptive_field for r in models.summary(models.alexnet(),
                                                         (1, 3, 224, 224)).rows) == 195
    assert max(r.receptive_field for r in models.summary(models.resnet20(),
                                                         (1, 3, 32, 32)).rows) == 81


def test_summary_cli(capsys):
    from cnnrs import cli

    assert cli.main(["summary", "lenet"]) == 0
    assert "61,706 parameters" in capsys.readouterr().out
    assert cli.main(["summary", "nope"]) == 2


def _seeded_run(seed):
    from cnnrs.data import transforms as T

    cnnrs.manual_seed(seed)
    model = models.resnet20(num_classes=10, in_channels=1)
    # Dropout and augmentation draw from the seeded generators too.
    model.fc = cnnrs.nn.Sequential(cnnrs.nn.Dropout(0.3), model.fc)
    aug = T.Compose([T.RandomCrop(16, padding=2), T.RandomHorizontalFlip(), T.Cutout(4)])
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 1, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(2):
        loss = F.cross_entropy(model(cnnrs.tensor(aug(x))), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            for k, v in model.state_dict().items()}


def test_seeded_training_repeats_bit_for_bit():
    a, b = _seeded_run(3), _seeded_run(3)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    c = _seeded_run(4)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
