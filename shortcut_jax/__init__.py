"""shortcut-jax: how a shortcut connection changes the learning of a two-layer ReLU/sigmoid net."""

from shortcut_jax import data, diagnostics, results, stats
from shortcut_jax.grads import backward, manual_example_grad, manual_grad, manual_grad_bce
from shortcut_jax.model import (
    Params,
    bce_loss,
    count_params,
    example_bce_loss,
    example_loss,
    forward,
    forward_batch,
    forward_columns,
    forward_example,
    init_params,
    loss,
    num_normals,
    num_params,
    params_from_normals,
    predict,
)
from shortcut_jax.sweep import Grid, run_sweep, use_cpu_cores
from shortcut_jax.train import (
    Data,
    Draws,
    TrainConfig,
    draw,
    evaluate,
    fit,
    make_stages,
    make_train,
)

__version__ = "0.1.0"

__all__ = [
    "Data",
    "Draws",
    "Grid",
    "Params",
    "TrainConfig",
    "backward",
    "bce_loss",
    "count_params",
    "data",
    "diagnostics",
    "draw",
    "evaluate",
    "example_bce_loss",
    "example_loss",
    "fit",
    "forward",
    "forward_batch",
    "forward_columns",
    "forward_example",
    "init_params",
    "loss",
    "make_stages",
    "make_train",
    "manual_example_grad",
    "manual_grad",
    "manual_grad_bce",
    "num_normals",
    "num_params",
    "params_from_normals",
    "predict",
    "results",
    "run_sweep",
    "stats",
    "use_cpu_cores",
]
