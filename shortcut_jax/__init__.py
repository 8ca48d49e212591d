"""shortcut-jax: how a shortcut connection changes the learning of a two-layer ReLU/sigmoid net."""

from shortcut_jax.grads import manual_example_grad, manual_grad
from shortcut_jax.model import (
    Params,
    count_params,
    example_loss,
    forward,
    init_params,
    loss,
    num_params,
    predict,
)

__version__ = "0.1.0"

__all__ = [
    "Params",
    "count_params",
    "example_loss",
    "forward",
    "init_params",
    "loss",
    "manual_example_grad",
    "manual_grad",
    "num_params",
    "predict",
]
