"""The hand-written derivatives checked against jax.grad and central finite differences.

`run(cases)` draws random cases at parameter scales 1e-2..10 and returns, for W1, b1, W2, b2, W
and both networks, the max absolute and relative error of `manual_grad` vs `jax.grad(loss)`
(float32 and float64) and vs central finite differences (float64); `shortcut-jax grad-check`
prints it and exits 1 if any exceeds its tolerance.

Relative error of an entry: |m - a| / (|a| + s), with s the size of the terms summed into it
(max_j mean_i |dL_i/dtheta_j| for jax.grad, max(1, max |fd|) * 1e-2 for finite differences), so
`rel <= rtol` is exactly the test suite's check |m - a| <= rtol |a| + rtol s.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import shortcut_jax as sj

FIELDS = ("W1", "b1", "W2", "b2", "W")
SHAPES = [(1, 1, 1), (2, 16, 64), (5, 7, 33), (8, 32, 128), (30, 64, 256), (64, 128, 32)]
SCALES = np.array([1e-2, 1e-1, 0.5, 1.0, 3.0, 10.0])
RTOL = {"float32": 1e-5, "float64": 1e-10, "fd": 1e-6}
FD_EPS, FD_KINK, FD_MAX_PARAMS = 1e-6, 1e-3, 600


def draw_case(key, scale, d, h, n, shortcut, dtype):
    """One random case: parameters at `scale`, X ~ N(0, 1), labels Bernoulli(1/2)."""
    k = jax.random.split(key, 6)
    params = sj.Params(
        W1=scale * jax.random.normal(k[0], (h, d), dtype),
        b1=scale * jax.random.normal(k[1], (h,), dtype),
        W2=scale * jax.random.normal(k[2], (1, h), dtype),
        b2=scale * jax.random.normal(k[3], (), dtype),
        W=scale * jax.random.normal(k[4], (1, d), dtype) if shortcut else None,
    )
    X = jax.random.normal(k[5], (n, d), dtype)
    Y = jax.random.bernoulli(jax.random.fold_in(k[5], 1), 0.5, (n,)).astype(dtype)
    return params, X, Y


def term_scale(params, X, Y):
    per_example = jax.vmap(jax.grad(sj.example_loss), in_axes=(None, 0, 0))(params, X, Y)
    return jax.tree.map(lambda g: jnp.max(jnp.mean(jnp.abs(g), axis=0)), per_example)


def central_diff(params, X, Y):
    flat, unravel = ravel_pytree(params)
    J = lambda v: sj.loss(unravel(v), X, Y)  # noqa: E731
    steps = FD_EPS * jnp.eye(flat.size, dtype=flat.dtype)
    quotient = lambda e: (J(flat + e) - J(flat - e)) / (2 * FD_EPS)  # noqa: E731
    return unravel(jax.lax.map(quotient, steps, batch_size=64))


def errors(m, a, s):
    """(max abs error, max relative error) of one leaf, see the module docstring."""
    err = jnp.abs(m - a)
    return jnp.max(err), jnp.max(err / (jnp.abs(a) + s))


def check_group(keys, scales, d, h, n, shortcut, dtype):
    """Errors per field for a batch of same-shape cases, vmapped over (key, scale)."""

    def one(key, scale):
        params, X, Y = draw_case(key, scale, d, h, n, shortcut, dtype)
        manual, auto = sj.manual_grad(params, X, Y), jax.grad(sj.loss)(params, X, Y)
        scale_ = term_scale(params, X, Y)
        out = {f: errors(getattr(manual, f), getattr(auto, f), getattr(scale_, f))
               for f in FIELDS if getattr(params, f) is not None}
        if dtype == jnp.float64 and sj.num_params(d, h, shortcut=shortcut) <= FD_MAX_PARAMS:
            fd = central_diff(params, X, Y)
            far = jnp.min(jnp.abs(X @ params.W1.T + params.b1[None, :])) > FD_KINK
            for f in list(out):
                ref = getattr(fd, f)
                s = 1e-2 * jnp.maximum(1.0, jnp.max(jnp.abs(ref)))
                e_m, e_a = errors(getattr(manual, f), ref, s), errors(getattr(auto, f), ref, s)
                # cases near the ReLU kink are excluded: the difference quotient straddles it
                out[f + "/fd"] = tuple(jnp.where(far, jnp.maximum(x, y), 0.0)
                                       for x, y in zip(e_m, e_a))
            out["far"] = (far, far)
        return out

    return jax.jit(jax.vmap(one))(keys, scales)


def run(cases: int = 300, seed: int = 0) -> dict:
    """{"rows": [[network, param, cell f32, cell f64, cell fd], ...], "failed": bool,
    "excluded": cases near the ReLU kink left out of the fd check, "fd_cases", "cases"}."""
    rows, failed, excluded, fd_cases = [], False, 0, 0
    for shortcut in (False, True):
        table = {}  # (field, column) -> [max abs, max rel]
        for dtype_name in ("float32", "float64"):
            with jax.enable_x64(dtype_name == "float64"):
                dtype = jnp.dtype(dtype_name)
                key = jax.random.fold_in(jax.random.key(seed), int(shortcut))
                for g, (d, h, n) in enumerate(SHAPES):
                    k = len(range(g, cases, len(SHAPES)))
                    if k == 0:
                        continue
                    keys = jax.random.split(jax.random.fold_in(key, g), k)
                    scales = jnp.asarray(SCALES[np.arange(k) % len(SCALES)], dtype)
                    out = jax.device_get(check_group(keys, scales, d, h, n, shortcut, dtype))
                    if "far" in out:
                        far = np.asarray(out.pop("far")[0])
                        excluded += int((~far).sum())
                        fd_cases += len(far)
                    for f, (e_abs, e_rel) in out.items():
                        col = "fd" if f.endswith("/fd") else dtype_name
                        cell = table.setdefault((f.split("/")[0], col), [0.0, 0.0])
                        cell[0] = max(cell[0], float(np.max(e_abs)))
                        cell[1] = max(cell[1], float(np.max(e_rel)))
        for f in FIELDS:
            cells = []
            for col in ("float32", "float64", "fd"):
                if (f, col) not in table:
                    cells.append("—")
                    continue
                e_abs, e_rel = table[(f, col)]
                ok = e_rel <= RTOL[col]
                failed |= not ok
                cells.append(f"{e_abs:.1e} / {e_rel:.1e}{'' if ok else ' FAIL'}")
            if any(c != "—" for c in cells):
                rows.append(["shortcut" if shortcut else "plain", f, *cells])
    return {"rows": rows, "failed": failed, "excluded": excluded, "fd_cases": fd_cases,
            "cases": cases}


def format_table(result: dict) -> str:
    """The result of `run` as a text table with its tolerances and a PASS/FAIL line."""
    header = ["network", "param", "vs jax.grad f32", "vs jax.grad f64", "vs finite diff f64"]
    rows = result["rows"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"max abs / max rel error over {result['cases']} cases per network, shapes "
             f"(d, h, n) in {SHAPES}, scales {SCALES.tolist()}",
             f"tolerances (rel): f32 {RTOL['float32']}, f64 {RTOL['float64']}, fd {RTOL['fd']} "
             f"(fd: eps {FD_EPS}, models up to {FD_MAX_PARAMS} params, {result['excluded']} of "
             f"{result['fd_cases']} cases within {FD_KINK} of the ReLU kink skipped)"]
    for r in [header, ["-" * w for w in widths], *rows]:
        lines.append(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    lines.append("FAIL: an error exceeds its tolerance" if result["failed"]
                 else "PASS: all within tolerance")
    return "\n".join(lines)


# --- the network family (network.py, netgrads.py) ----------------------------------------------

NET_SHAPES = [(1, 1, 1), (3, 6, 24)]
NET_SCALES = np.array([0.3, 1.0, 2.0])


def network_settings(depths, activations, variants) -> tuple[list[tuple], list[str]]:
    """(depth, activation, variant) to check and notes on what was left out: a residual variant
    has no skip at depth 1 (it is the plain network), so it is refused when every depth is 1
    and its depth-1 combinations are left out otherwise."""
    from shortcut_jax import network as nw

    for name, values in (("depths", depths), ("activations", activations),
                         ("variants", variants)):
        if isinstance(values, str) or not hasattr(values, "__iter__"):
            raise TypeError(f"{name}: expected a sequence of values, got {values!r}")
    for depth in depths:
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
            raise ValueError(f"depth: expected integers >= 1, got {depth!r}")
    for a in activations:
        nw.check_activation(a)
    for v in variants:
        if v not in nw.VARIANTS:
            raise ValueError(f"variants: expected values in {nw.VARIANTS}, got {v!r}")
    residual = [v for v in variants if v.startswith("residual")]
    if residual and max(depths) == 1:
        raise ValueError(f"variants: {residual} add identity skips between hidden layers, and "
                         f"a depth-1 network has one hidden layer (residual is the plain "
                         f"network there); add a depth >= 2 or leave them out")
    notes = [f"{v} at depth 1 left out (no skip between hidden layers: the plain network)"
             for v in residual if 1 in depths]
    combos = [(L, a, v) for L in depths for a in activations for v in variants
              if not (L == 1 and v.startswith("residual"))]
    return combos, notes


def _net_case(key, scale, d, h, depth, n, shortcut, dtype):
    from shortcut_jax import network as nw

    k = jax.random.split(key, 2 * depth + 4)
    fan = [d] + [h] * (depth - 1)
    Ws = tuple(scale / np.sqrt(fan[i]) * jax.random.normal(k[i], (h, fan[i]), dtype)
               for i in range(depth))
    bs = tuple(0.5 * scale * jax.random.normal(k[depth + i], (h,), dtype) for i in range(depth))
    params = nw.NetParams(Ws=Ws, bs=bs, Wo=scale / np.sqrt(h) * jax.random.normal(
        k[-4], (1, h), dtype), bo=scale * jax.random.normal(k[-3], (), dtype),
        W=scale / np.sqrt(d) * jax.random.normal(k[-2], (1, d), dtype) if shortcut else None)
    X = jax.random.normal(k[-1], (n, d), dtype)
    Y = jax.random.bernoulli(jax.random.fold_in(k[-1], 1), 0.5, (n,)).astype(dtype)
    return params, X, Y


def check_net_group(keys, scales, d, h, n, depth, activation, variant, loss_fn, dtype):
    """Max abs and relative error over all leaves, per case, of net_manual_grad vs jax.grad
    (and, in float64 for small models, vs central differences of net_loss away from kinks)."""
    from shortcut_jax import netgrads as ng
    from shortcut_jax import network as nw

    residual, shortcut = nw.variant_parts(variant)
    kw = dict(activation=activation, residual=residual, loss_fn=loss_fn)
    J = lambda p, X, Y: nw.net_loss(p, X, Y, **kw)  # noqa: E731

    def one(key, scale):
        params, X, Y = _net_case(key, scale, d, h, depth, n, shortcut, dtype)
        manual, auto = ng.net_manual_grad(params, X, Y, **kw), jax.grad(J)(params, X, Y)
        per = jax.vmap(lambda x, y: jax.grad(J)(params, x[None], y[None]))(X, Y)
        s = jax.tree.map(lambda g: jnp.max(jnp.mean(jnp.abs(g), axis=0)), per)
        errs = [errors(m, a, t) for m, a, t in zip(*map(jax.tree.leaves, (manual, auto, s)))]
        out = {"auto": tuple(jnp.max(jnp.stack(e)) for e in zip(*errs))}
        if dtype == jnp.float64 and nw.num_net_params(d, h, depth, variant) <= FD_MAX_PARAMS:
            flat, unravel = ravel_pytree(params)
            steps = FD_EPS * jnp.eye(flat.size, dtype=flat.dtype)
            fd = unravel(jax.lax.map(lambda e: (J(unravel(flat + e), X, Y) - J(
                unravel(flat - e), X, Y)) / (2 * FD_EPS), steps, batch_size=64))
            zs = nw.net_forward_columns(params, X, activation=activation, residual=residual).zs
            far = (jnp.min(jnp.stack([jnp.min(jnp.abs(z)) for z in zs])) > FD_KINK
                   if activation in nw.KINKED else jnp.asarray(True))
            errs = []
            for m, f in zip(jax.tree.leaves(manual), jax.tree.leaves(fd)):
                errs.append(errors(m, f, 1e-2 * jnp.maximum(1.0, jnp.max(jnp.abs(f)))))
            out["fd"] = tuple(jnp.where(far, jnp.max(jnp.stack(e)), 0.0) for e in zip(*errs))
            out["far"] = (far, far)
        return out

    return jax.jit(jax.vmap(one))(keys, scales)


def run_network(cases: int = 30, seed: int = 0, depths=(1,), activations=("relu",),
                variants=("plain", "shortcut"), loss_fns=("mse", "bce")) -> dict:
    """The hand-written network gradients (netgrads.net_manual_grad) for every (depth,
    activation, variant, loss) given, `cases` random cases each over NET_SHAPES and NET_SCALES;
    result as `run`'s, one row per combination (the worst leaf)."""
    combos, notes = network_settings(depths, activations, variants)
    rows, failed, excluded, fd_cases = [], False, 0, 0
    for depth, activation, variant in combos:
        for loss_fn in loss_fns:
            table = {}
            for dtype_name in ("float32", "float64"):
                with jax.enable_x64(dtype_name == "float64"):
                    dtype = jnp.dtype(dtype_name)
                    key = jax.random.fold_in(jax.random.key(seed), depth)
                    for g, (d, h, n) in enumerate(NET_SHAPES):
                        k = len(range(g, cases, len(NET_SHAPES)))
                        if k == 0:
                            continue
                        keys = jax.random.split(jax.random.fold_in(key, g), k)
                        scales = jnp.asarray(NET_SCALES[np.arange(k) % len(NET_SCALES)], dtype)
                        out = jax.device_get(check_net_group(keys, scales, d, h, n, depth,
                                                             activation, variant, loss_fn,
                                                             dtype))
                        if "far" in out:
                            far = np.asarray(out.pop("far")[0])
                            excluded += int((~far).sum())
                            fd_cases += len(far)
                        for col, (e_abs, e_rel) in out.items():
                            col = dtype_name if col == "auto" else col
                            cell = table.setdefault(col, [0.0, 0.0])
                            cell[0] = max(cell[0], float(np.max(e_abs)))
                            cell[1] = max(cell[1], float(np.max(e_rel)))
            cells = []
            for col in ("float32", "float64", "fd"):
                if col not in table:
                    cells.append("—")
                    continue
                e_abs, e_rel = table[col]
                ok = e_rel <= RTOL[col]
                failed |= not ok
                cells.append(f"{e_abs:.1e} / {e_rel:.1e}{'' if ok else ' FAIL'}")
            rows.append([f"L={depth} {activation} {variant}", loss_fn, *cells])
    return {"rows": rows, "failed": failed, "excluded": excluded, "fd_cases": fd_cases,
            "cases": cases, "notes": notes}


def format_network_table(result: dict) -> str:
    """The result of `run_network` as a text table with a PASS/FAIL line."""
    header = ["network", "loss", "vs jax.grad f32", "vs jax.grad f64", "vs finite diff f64"]
    rows = result["rows"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"the network family (netgrads.net_manual_grad): max abs / max rel error over all "
             f"leaves, {result['cases']} cases per row, shapes (d, h, n) in {NET_SHAPES}, "
             f"scales {NET_SCALES.tolist()}; fd skips {result['excluded']} of "
             f"{result['fd_cases']} cases within {FD_KINK} of a kink", *result["notes"]]
    for r in [header, ["-" * w for w in widths], *rows]:
        lines.append(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    lines.append("FAIL: an error exceeds its tolerance" if result["failed"]
                 else "PASS: all within tolerance")
    return "\n".join(lines)
