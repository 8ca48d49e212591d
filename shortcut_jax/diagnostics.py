"""What a run looks like inside: dead units, saturation, gradient norms, the shortcut's share.

`at_eval` is computed inside the compiled training loop at every eval step; the exact Hessian
once at the end (the models are tiny): `hessian_spectrum` by `jax.hessian`, `hessian_by_hand`
written out in NumPy (what the report uses; nothing to compile).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from shortcut_jax.model import Forward, Params, check_finite, check_labels, forward_columns
from shortcut_jax.network import NetForward, NetParams, named_leaves, net_loss

SATURATED = 1e-3  # an example is saturated when y_hat (1 - y_hat) < SATURATED


# Each diagnostic reads the training forward pass in columns (model.forward_columns), the
# same ops as the gradient's, so that XLA computes that pass once per eval point; `at_eval`
# traces it once and hands it to each (the `_from` functions).


def dead_fraction(params: Params, X: jax.Array) -> jax.Array:
    """Fraction of hidden units with z1 <= 0 on every row of X (n, d)."""
    return _dead_from(forward_columns(params, X))


def saturated_fraction(params: Params, X: jax.Array) -> jax.Array:
    """Fraction of rows of X whose sigmoid is saturated, y_hat (1 - y_hat) < SATURATED."""
    return _saturated_from(forward_columns(params, X))


def shortcut_share(params: Params, X: jax.Array) -> jax.Array:
    """Mean over rows of |W x| / (|W x| + |W2 a1|): 0 for the plain net and for W = 0."""
    return _share_from(params, X, forward_columns(params, X))


def _dead_from(fwd: Forward) -> jax.Array:
    Z1T = fwd.z1
    return jnp.mean(jnp.all(Z1T <= 0, axis=1).astype(Z1T.dtype))


def _saturated_from(fwd: Forward) -> jax.Array:
    Y_hat = fwd.y_hat
    return jnp.mean((Y_hat * (1 - Y_hat) < SATURATED).astype(Y_hat.dtype))


def _share_from(params: Params, X: jax.Array, fwd: Forward) -> jax.Array:
    if params.W is None:
        return jnp.zeros((), X.dtype)
    A1T = fwd.a1
    skip, hidden = jnp.abs(params.W[0] @ X.T), jnp.abs(params.W2[0] @ A1T)
    total = skip + hidden
    return jnp.mean(jnp.where(total > 0, skip / jnp.where(total > 0, total, 1), 0))


def max_overlap(params: Params) -> jax.Array:
    """Largest cosine similarity between two hidden units' incoming weights (0 when h = 1)."""
    W1 = params.W1
    norms = jnp.linalg.norm(W1, axis=1)
    unit = W1 / jnp.where(norms > 0, norms, 1)[:, None]
    cos = unit @ unit.T
    h = W1.shape[0]
    off_diagonal = jnp.where(jnp.eye(h, dtype=bool), -jnp.inf, cos)
    return jnp.max(off_diagonal) if h > 1 else jnp.zeros((), W1.dtype)


def grad_norms(g: Params) -> dict[str, jax.Array]:
    """Euclidean norm of the gradient of each parameter group, keyed grad_norm_<name>."""
    return {f"grad_norm_{k}": jnp.sqrt(jnp.sum(v * v))
            for k, v in g._asdict().items() if v is not None}


def at_eval(params: Params, g: Params, X: jax.Array,
            fwd: Forward | None = None) -> dict[str, jax.Array]:
    """All per-eval diagnostics of one run: X the training inputs, g the gradient there, fwd
    forward_columns(params, X) if already computed."""
    fwd = forward_columns(params, X) if fwd is None else fwd
    return {
        "dead_frac": _dead_from(fwd),
        "saturated_frac": _saturated_from(fwd),
        "shortcut_share": _share_from(params, X, fwd),
        "max_overlap": max_overlap(params),
        **grad_norms(g),
    }


def net_at_eval(params: NetParams, g: NetParams, X: jax.Array,
                fwd: NetForward) -> dict[str, jax.Array]:
    """at_eval for the network family, fwd = network.net_forward_columns(params, X):
    dead_frac (hidden units of every layer with z_k <= 0 on every row) and dead_frac_k per
    layer, saturated_frac, shortcut_share (|W x| / (|W x| + |W_o a_L|)), max_overlap (the
    largest over layers of max_overlap_k, between units' incoming weights in layer k) and
    grad_norm_<leaf> (network.named_leaves). At depth 1 the first four are at_eval's."""
    out: dict[str, jax.Array] = {}
    dead = [jnp.all(Z <= 0, axis=1).astype(Z.dtype) for Z in fwd.zs]
    out["dead_frac"] = jnp.mean(jnp.concatenate(dead))
    Y_hat = fwd.y_hat
    out["saturated_frac"] = jnp.mean((Y_hat * (1 - Y_hat) < SATURATED).astype(Y_hat.dtype))
    if params.W is None:
        out["shortcut_share"] = jnp.zeros((), X.dtype)
    else:
        skip, hidden = jnp.abs(params.W[0] @ X.T), jnp.abs(params.Wo[0] @ fwd.as_[-1])
        total = skip + hidden
        out["shortcut_share"] = jnp.mean(jnp.where(total > 0, skip / jnp.where(total > 0, total,
                                                                                1), 0))
    overlaps = [max_overlap(Params(W1=Wk, b1=None, W2=None, b2=None)) for Wk in params.Ws]
    out["max_overlap"] = jnp.max(jnp.stack(overlaps))
    if len(params.Ws) > 1:
        for k, (d_k, o_k) in enumerate(zip(dead, overlaps), start=1):
            out[f"dead_frac_{k}"], out[f"max_overlap_{k}"] = jnp.mean(d_k), o_k
    out.update({f"grad_norm_{k}": jnp.sqrt(jnp.sum(v * v))
                for k, v in named_leaves(g).items() if v is not None})
    return out


def hessian_matrix(objective, params: Params, X: jax.Array, Y: jax.Array) -> jax.Array:
    """The exact Hessian of J = objective(params, X, Y) over the flattened parameters
    (ravel_pytree order), symmetrized."""
    flat, unravel = ravel_pytree(params)
    H = jax.hessian(lambda v: objective(unravel(v), X, Y))(flat)
    return 0.5 * (H + H.T)


def hessian_by_hand(params: Params, X, Y, loss_fn: str = "mse") -> np.ndarray:
    """The exact Hessian of J over the flattened parameters (ravel_pytree order: W1, b1, W2,
    b2, W), written out, in float64 NumPy; params may carry a leading axis of R runs -> (R, P, P).

    With l(z2, y) the loss of one example and g = dz2/dtheta,

        (h.1) d2J/dtheta2 = 1/n sum_i [ l''(z2_i) g_i g_i^T + l'(z2_i) d2z2_i/dtheta2 ]
        (h.2) g = (W2_k 1{z1_k > 0} x^T, W2_k 1{z1_k > 0}, a1_k, 1, x^T)   (W1_k, b1_k, W2_k, b2, W)
        (h.3) d2z2/dW2_k dW1_k = 1{z1_k > 0} x^T, d2z2/dW2_k db1_k = 1{z1_k > 0}, else 0
              (ReLU'' = 0, as in jax.grad)
        mse: l' = (y_hat - y) s, l'' = s^2 + (y_hat - y) s (1 - 2 y_hat), s = y_hat (1 - y_hat)
        bce: l' = y_hat - y,     l'' = s

    NumPy, so nothing compiles; equals jax.hessian of model.loss / bce_loss (tested).
    """
    W1, b1, W2, b2 = (np.asarray(a, np.float64) for a in params[:4])
    W = None if params.W is None else np.asarray(params.W, np.float64)
    single = W1.ndim == 2
    if single:
        W1, b1, W2, b2 = W1[None], b1[None], W2[None], b2[None]
        W = None if W is None else W[None]
    if loss_fn not in ("mse", "bce"):
        raise ValueError(f"loss_fn: expected 'mse' or 'bce', got {loss_fn!r}")
    if W1.ndim != 3:
        raise ValueError(f"params.W1: expected shape (h, d) or (runs, h, d), got {W1.shape}")
    R, h, d = W1.shape
    for name, a, shape in (("b1", b1, (h,)), ("W2", W2, (1, h)), ("b2", b2, ()),
                           ("W", W, (1, d))):
        if a is not None and a.shape != (R, *shape):
            raise ValueError(f"params.{name}: expected shape {shape if single else (R, *shape)}"
                             f" to match W1 {W1.shape[1:] if single else W1.shape}, got "
                             f"{a.shape[1:] if single else a.shape}")
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim != 2 or X.shape[1] != d or len(X) < 1 or not np.issubdtype(X.dtype, np.floating):
        raise ValueError(f"X: expected a floating (n, {d}) array with n >= 1, got "
                         f"{X.dtype}{list(X.shape)}")
    n = X.shape[0]
    if Y.shape != (n,):
        raise ValueError(f"Y: expected shape ({n},) to match X, got {Y.shape}")
    check_finite("X", X)
    check_labels("Y", Y)
    for name, a in zip(Params._fields, (W1, b1, W2, b2, W)):
        if a is not None:
            check_finite(f"params.{name}", a)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    Z1 = np.einsum("nd,rhd->rnh", X, W1) + b1[:, None, :]            # (R, n, h)
    on = (Z1 > 0).astype(np.float64)                                  # 1{z1 > 0}
    A1 = Z1 * on
    Z2 = np.einsum("rnh,rh->rn", A1, W2[:, 0]) + b2[:, None]
    if W is not None:
        Z2 = Z2 + np.einsum("nd,rd->rn", X, W[:, 0])
    Y_hat = 0.5 * (1.0 + np.tanh(0.5 * Z2))                           # sigmoid, no overflow
    s = Y_hat * (1 - Y_hat)
    if loss_fn == "mse":
        l1, l2 = (Y_hat - Y) * s, s * s + (Y_hat - Y) * s * (1 - 2 * Y_hat)
    else:
        l1, l2 = Y_hat - Y, s
    dz1 = W2[:, 0][:, None, :] * on                                   # (h.2) dz2/db1
    G = [(dz1[..., None] * X[None, :, None, :]).reshape(R, n, h * d), dz1, A1,
         np.ones((R, n, 1))]                                           # (h.2), one row per i
    if W is not None:
        G.append(np.broadcast_to(X, (R, n, d)))
    G = np.concatenate(G, axis=2)                                     # (R, n, P)
    H = np.matmul(np.swapaxes(G, 1, 2) * (l2 / n)[:, None, :], G)     # (h.1), first term
    cross_W1 = np.einsum("rn,rnh,nd->rhd", l1 / n, on, X)             # (h.1) second term, (h.3)
    cross_b1 = np.einsum("rn,rnh->rh", l1 / n, on)
    k = np.arange(h)
    for j in range(d):
        H[:, h * d + h + k, k * d + j] += cross_W1[:, :, j]
        H[:, k * d + j, h * d + h + k] += cross_W1[:, :, j]
    H[:, h * d + h + k, h * d + k] += cross_b1
    H[:, h * d + k, h * d + h + k] += cross_b1
    return H[0] if single else H


def net_hessian(params: NetParams, X, Y, *, activation: str = "relu", residual: bool = False,
                loss_fn: str = "mse") -> np.ndarray:
    """The exact Hessian of the network family's J (network.net_loss) over the flattened
    parameters (ravel_pytree order: W_1..W_L, b_1..b_L, W_o, b_o, W, which is hessian_by_hand's
    at depth 1), by jax.hessian in float64, symmetrized; params may carry a leading axis of R
    runs -> (R, P, P). At depth 1 with ReLU it equals hessian_by_hand (tested)."""
    if not isinstance(params, NetParams):
        raise TypeError(f"params: expected a network.NetParams, got {type(params).__name__}")
    with jax.enable_x64(True):
        p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        X, Y = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
        single = p.Ws[0].ndim == 2
        if single:
            p = jax.tree.map(lambda a: a[None], p)
        H = np.asarray(_net_hessians(p, X, Y, activation=activation, residual=residual,
                                     loss_fn=loss_fn))
    return H[0] if single else H


@functools.partial(jax.jit, static_argnames=("activation", "residual", "loss_fn"))
def _net_hessians(params, X, Y, *, activation: str, residual: bool, loss_fn: str):
    """The settings static (hashable strings and a bool), the loss built inside: a partial
    passed as the static argument compared unequal on every call and compiled again."""
    J = functools.partial(net_loss, activation=activation, residual=residual, loss_fn=loss_fn)
    return jax.vmap(lambda q: hessian_matrix(J, q, X, Y))(params)


def spectrum_fractions(eig, tol: float = 1e-6, xp=jnp) -> dict:
    """Fractions of the eigenvalues eig (..., P) of a Hessian near zero (|lambda| <= tol
    max|lambda|) and negative (lambda < -tol max|lambda|). xp: jax.numpy or numpy."""
    scale = xp.maximum(xp.max(xp.abs(eig), axis=-1), xp.finfo(eig.dtype).tiny)[..., None]
    P = eig.shape[-1]
    return {"hess_zero_frac": xp.sum(xp.abs(eig) <= tol * scale, axis=-1) / P,
            "hess_neg_frac": xp.sum(eig < -tol * scale, axis=-1) / P}


def hessian_spectrum(objective, params: Params, X: jax.Array, Y: jax.Array,
                     tol: float = 1e-6) -> dict[str, jax.Array]:
    """Exact Hessian of J at params (jax.hessian): eigenvalues and fractions near zero /
    negative (spectrum_fractions)."""
    eig = jnp.linalg.eigvalsh(hessian_matrix(objective, params, X, Y))
    return {"eigenvalues": eig, **spectrum_fractions(eig, tol)}


CAUSES = ("dead", "silent", "rescaling", "always_active", "duplicated", "thin", "collinear",
          "rows")
"""The causes of flat Hessian directions that `singularity_census` counts (see there)."""
SILENT = 1e-8
"""A live unit is silent when |W2_k| <= SILENT max_j |W2_j| (its output weight is 0)."""


def singularity_census(params: Params, X) -> dict[str, np.ndarray]:
    """Per run (params may carry a leading axis of R runs), the units that make J's Hessian
    singular at these parameters on the training inputs X (n, d), and the number of zero
    Hessian directions each cause predicts, at a critical point (`crit_<cause>`) and at any
    point (`any_<cause>`); `crit_total`, `any_total` their sums. NumPy float64.

    A unit is *active* on a row when z1 > 0 (ReLU' = 0 at 0, as jax.grad and hessian_by_hand);
    patterns are compared exactly (no tolerance: the Hessian depends on a unit only through its
    pattern 1{z1 > 0} and its weights). Census: *dead* (active on no row), *live* (not dead),
    *silent* (live with W2_k = 0: |W2_k| <= SILENT max |W2|), *always active* (not silent,
    active on every row), *duplicated* (a unit, neither dead, silent nor always active, whose
    pattern equals an earlier such unit's: sum over groups of m - 1), *thin* (a pattern p of
    such units whose rows' [x, 1] have rank r_p < d + 1).

    Derivation. J = 1/n sum_i l(z2_i); g_i = dz2_i/dtheta (hessian_by_hand's (h.2)) are the
    rows of G (n, P); H = 1/n G^T diag(l'') G + C, C = 1/n sum_i l'_i d2z2_i/dtheta2, whose
    only non-zero blocks are (W2_k, W1_k) = r_k = 1/n sum_i l'_i 1{z1_ik > 0} x_i and
    (W2_k, b1_k) = s_k = 1/n sum_i l'_i 1{z1_ik > 0}. The columns of G for unit k are
    W2_k p_k * [x, 1] (W1_k, b1_k) and a1_k = p_k * (W1_k x + b1_k), a combination of those;
    b2's is 1 and W's x. So, with the units' W2_k != 0 and the patterns' columns independent
    across patterns (data in general position, enough rows), rank G = sum over distinct
    patterns p of units neither dead nor always active of r_p, plus r_lin = rank [X, 1] = r_X
    for the linear part (always-active units, b2, W) if there is a shortcut or an
    always-active unit, else 1 (b2 alone).

    At a critical point (grad J = 0, so W2_k r_k = W2_k s_k = 0, so C = 0 where W2_k != 0;
    for silent units a minimum) and
    l'' != 0 on every row (always for the cross-entropy, l'' = y_hat (1 - y_hat)), null H =
    null G, P - rank G directions:
      dead         d + 2 per dead unit: its W1 row, b1, W2 columns are 0;
      silent       d + 1 per silent unit at a minimum: its W1 row's and b1's columns of G are 0,
                   and C's block (W2_k, (W1_k, b1_k)) = (r_k, s_k) must be 0 there too, else
                   [[0, c], [c^T, a]] is indefinite (a saddle); d at any point (v . (r_k, s_k)
                   = 0); its a1_k column counts 1 in rank_sum;
      rescaling    1 per live unit not silent: (W1_k, b1_k, -W2_k), the symmetry c W1_k,
                   c b1_k, W2_k / c;
      duplicated   (m - 1)(d + 1) per group of m units with one pattern: their m (d + 1)
                   columns W2_k p * [x, 1] span d + 1;
      thin         d + 1 - r_p per such pattern (r_p < d + 1: active on few rows);
      always_active with A >= 1 always-active units, their columns W2_k [x, 1] and b2's [+ W's]
                   span r_X: with the shortcut A (d + 1) (b1_k trades with b2, W1_k with W),
                   without it A (d + 1) - d (b1_k with b2; W1_k with another unit's only);
      collinear    d + 1 - r_X where the linear part spans [X, 1] (shortcut or A >= 1);
      rows         max(0, rank_sum - n_distinct): G has at most as many independent rows as
                   X has distinct rows.
    At any point C != 0 in general and a direction v is exactly flat when G v = 0 and C v = 0
    (generically nothing else): C v = 0 forces v_W2k = 0 for every live unit (C's W1_k block is
    r_k v_W2k), so no rescaling, and (r_k, s_k) . (v_W1k, v_b1k) = 0 for each live unit, one
    constraint per unit, implied for a lone unit of a pattern (r_k, s_k is in the row space of
    its rows' [x, 1]). Hence: dead d + 2; duplicated (m - 1) d per group; thin as above;
    always_active with the shortcut A d, without it (A - 1) d; collinear as above; no rescaling
    and no rows term. E.g. d = 2, one dead and one always-active unit: 4 exact zeros without
    the shortcut, 6 with it. Not counted: a live unit with W2_k = 0, patterns that are sums of
    others (e.g. two complementary units), l'' = 0 rows (mse), which add directions: the
    measured count minus the prediction is the unexplained part. Tested against the null space
    of the float64 Hessian on constructed networks.
    """
    W1 = np.asarray(params.W1, np.float64)
    b1 = np.asarray(params.b1, np.float64)
    single = W1.ndim == 2
    if single:
        W1, b1 = W1[None], b1[None]
    X = np.asarray(X, np.float64)
    R, h, d = W1.shape
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"X: expected shape (n, {d}) to match params.W1, got {list(X.shape)}")
    shortcut = params.W is not None
    Xa = np.concatenate([X, np.ones((len(X), 1))], axis=1)             # [x, 1]
    r_X = np.linalg.matrix_rank(Xa)
    n_distinct = len(np.unique(X, axis=0))
    on = np.einsum("nd,rhd->rhn", X, W1) + b1[:, :, None] > 0          # (R, h, n) patterns
    count = on.sum(axis=2)
    W2 = np.abs(np.asarray(params.W2, np.float64).reshape(R, h))
    dead = count == 0
    silent = ~dead & (W2 <= SILENT * W2.max(axis=1, keepdims=True))
    always = (count == len(X)) & ~silent
    kinked = ~dead & ~always & ~silent
    # rank of each pattern's rows [x, 1]: of the Gram matrix Xa^T diag(p) Xa, batched
    gram = np.einsum("rhn,ni,nj->rhij", on.astype(np.float64), Xa, Xa)
    rank = np.linalg.matrix_rank(gram, hermitian=True)                  # (R, h)
    out = {k: np.zeros(R, np.int64) for k in ("n_dead", "n_always_active", "n_live",
                                              "n_duplicated", "rank_sum")}
    thin = np.zeros(R, np.int64)
    for r in range(R):
        units = np.flatnonzero(kinked[r])
        first = {}
        for k in units:
            first.setdefault(on[r, k].tobytes(), k)
        distinct = np.fromiter(first.values(), np.int64, len(first))
        out["n_duplicated"][r] = len(units) - len(distinct)
        thin[r] = int(np.sum(d + 1 - rank[r, distinct]))
        out["rank_sum"][r] = int(np.sum(rank[r, distinct]))
    A, quiet = always.sum(axis=1), silent.sum(axis=1)
    out["n_dead"], out["n_always_active"], out["n_live"] = dead.sum(1), A, h - dead.sum(1)
    out["n_silent"] = quiet
    linear = (A > 0) | shortcut
    out["rank_sum"] += np.where(linear, r_X, 1) + quiet
    dup = out["n_duplicated"]
    out.update(
        crit_dead=(d + 2) * out["n_dead"], any_dead=(d + 2) * out["n_dead"],
        crit_silent=(d + 1) * quiet, any_silent=d * quiet,
        crit_rescaling=out["n_live"] - quiet, any_rescaling=np.zeros(R, np.int64),
        crit_always_active=A * (d + 1) if shortcut else np.where(A > 0, A * (d + 1) - d, 0),
        any_always_active=A * d if shortcut else np.where(A > 0, (A - 1) * d, 0),
        crit_duplicated=dup * (d + 1), any_duplicated=dup * d,
        crit_thin=thin, any_thin=thin,
        crit_collinear=np.where(linear, d + 1 - r_X, 0),
        any_collinear=np.where(linear, d + 1 - r_X, 0),
        crit_rows=np.maximum(0, out["rank_sum"] - n_distinct), any_rows=np.zeros(R, np.int64))
    out["crit_total"] = sum(out[f"crit_{c}"] for c in CAUSES)
    out["any_total"] = sum(out[f"any_{c}"] for c in CAUSES)
    return {k: v[0] for k, v in out.items()} if single else out
