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
