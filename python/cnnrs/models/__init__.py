"""Model builders, assembled from ``cnnrs.nn`` only."""

from .lenet import LeNet5, lenet5

__all__ = ["LeNet5", "lenet5", "get_model", "MODELS"]

MODELS = {"lenet": lenet5, "lenet5": lenet5}


def get_model(name: str, **kwargs):
    """Builds a model by name (``lenet``/``lenet5``)."""
    try:
        builder = MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    return builder(**kwargs)
