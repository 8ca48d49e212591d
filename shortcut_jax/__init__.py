"""shortcut-jax: how a shortcut connection changes the learning of a two-layer ReLU/sigmoid net.

The public face: the network and its derivatives (model, grads), training (train), sweeps and
their results (sweep, results), data. Plumbing stays importable from its module (e.g.
shortcut_jax.grads.backward, shortcut_jax.train.make_stages). `stats`, `plots` and `report`
load pandas, scipy and matplotlib, so they are imported when first used.
"""

import importlib

from shortcut_jax import compilation, data, diagnostics, results
from shortcut_jax.data import Dataset
from shortcut_jax.grads import manual_example_grad, manual_grad, manual_grad_bce
from shortcut_jax.model import (
    Forward,
    Params,
    bce_loss,
    count_params,
    example_bce_loss,
    example_loss,
    forward,
    forward_columns,
    forward_example,
    init_params,
    loss,
    num_params,
    predict,
)
from shortcut_jax.netgrads import net_manual_example_grad, net_manual_grad
from shortcut_jax.network import (
    NetForward,
    NetParams,
    count_net_params,
    from_net,
    net_forward,
    net_forward_columns,
    net_init,
    net_loss,
    net_predict,
    num_net_params,
    to_net,
)
from shortcut_jax.results import load as load_results
from shortcut_jax.results import load_params
from shortcut_jax.sweep import Grid, run_sweep, use_cpu_cores
from shortcut_jax.train import TrainConfig, evaluate, fit, make_train

__version__ = "0.1.0"

_LAZY = ("stats", "plots", "report")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"shortcut_jax.{name}")
    raise AttributeError(f"module 'shortcut_jax' has no attribute {name!r}")


__all__ = [
    "Dataset",
    "Forward",
    "Grid",
    "NetForward",
    "NetParams",
    "Params",
    "TrainConfig",
    "bce_loss",
    "compilation",
    "count_net_params",
    "count_params",
    "data",
    "diagnostics",
    "evaluate",
    "example_bce_loss",
    "example_loss",
    "fit",
    "forward",
    "forward_columns",
    "forward_example",
    "from_net",
    "init_params",
    "load_params",
    "load_results",
    "loss",
    "make_train",
    "manual_example_grad",
    "manual_grad",
    "manual_grad_bce",
    "net_forward",
    "net_forward_columns",
    "net_init",
    "net_loss",
    "net_manual_example_grad",
    "net_manual_grad",
    "net_predict",
    "num_net_params",
    "num_params",
    "plots",
    "predict",
    "report",
    "results",
    "run_sweep",
    "stats",
    "to_net",
    "use_cpu_cores",
]
