"""LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, on 32x32 input."""

from __future__ import annotations

from .. import nn

__all__ = ["LeNet5", "lenet5"]


class LeNet5(nn.Module):
    """conv5x5(6) - ReLU - maxpool2 - conv5x5(16) - ReLU - maxpool2 -
    FC 400-120 - ReLU - FC 120-84 - ReLU - FC 84-classes.

    Shape: input ``(N, in_channels, 32, 32)`` -> logits ``(N, num_classes)``.

    The PyTorch twin (same state_dict keys and shapes, 61,706 parameters for
    10 classes and 1 input channel)::

        class LeNet5(torch.nn.Module):
            def __init__(self, num_classes=10, in_channels=1):
                super().__init__()
                self.conv1 = nn.Conv2d(in_channels, 6, 5)
                self.conv2 = nn.Conv2d(6, 16, 5)
                self.fc1 = nn.Linear(16 * 5 * 5, 120)
                self.fc2 = nn.Linear(120, 84)
                self.fc3 = nn.Linear(84, num_classes)
            def forward(self, x):
                x = F.max_pool2d(F.relu(self.conv1(x)), 2)
                x = F.max_pool2d(F.relu(self.conv2(x)), 2)
                x = torch.flatten(x, 1)
                return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


def lenet5(num_classes: int = 10, in_channels: int = 1) -> LeNet5:
    """LeNet-5 for ``(N, in_channels, 32, 32)`` input (61,706 parameters with
    the defaults).

    Example:
        >>> model = cnnrs.models.lenet5()
        >>> model(cnnrs.zeros(2, 1, 32, 32)).shape
        (2, 10)
    """
    return LeNet5(num_classes=num_classes, in_channels=in_channels)
