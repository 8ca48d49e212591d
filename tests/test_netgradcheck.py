"""`shortcut-jax grad-check` over the network family's axes: --depth, --activation, --variants."""

import re

import pytest

from shortcut_jax import cli, netgrads

ARGS = ["grad-check", "--cases", "1", "--net-cases", "1", "--depth", "1", "2", "--activation",
        "tanh", "--variants", "shortcut", "residual"]


def test_grad_check_covers_the_given_axes_and_passes(capsys):
    assert cli.main(ARGS) == 0
    out = capsys.readouterr().out
    for row in ("L=1 tanh shortcut", "L=2 tanh shortcut", "L=2 tanh residual"):
        assert out.count(row) == 2, row  # mse and bce
    assert "L=1 tanh residual" not in out
    assert "residual at depth 1 left out" in out
    assert out.rstrip().endswith("PASS: all within tolerance")


def test_grad_check_exits_1_when_a_network_gradient_is_wrong(capsys, monkeypatch):
    real = netgrads.net_manual_grad

    def off(*a, **k):
        g = real(*a, **k)
        return g._replace(bo=1.001 * g.bo)

    monkeypatch.setattr(netgrads, "net_manual_grad", off)
    assert cli.main(["grad-check", "--cases", "1", "--net-cases", "1", "--depth", "2",
                     "--variants", "residual"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--variants", "residual"], r"--variants: \['residual'\] add identity skips between hidden "
                                 r"layers, and a depth-1 network has one hidden layer"),
    (["--depth", "0"], r"--depth: .*expected an integer >= 1, got '0'"),
    (["--activation", "gelu"], r"--activation: invalid choice: 'gelu'"),
])
def test_grad_check_refuses_bad_values_naming_the_flag(flags, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["grad-check", *flags])
    assert e.value.code == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize("name", ["depths", "activations", "variants"])
def test_network_settings_refuses_a_bare_value_naming_the_argument(name):
    from shortcut_jax import gradcheck

    given = {"depths": [1, 2], "activations": ["relu"], "variants": ["plain"]}
    given[name] = {"depths": 2, "activations": "relu", "variants": "plain"}[name]
    with pytest.raises(TypeError, match=f"{name}: expected a sequence of values, got"):
        gradcheck.network_settings(**given)
