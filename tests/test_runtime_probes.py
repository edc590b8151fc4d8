"""The TL5xx probes: end to end through `trainlint run` on fixtures/runtime/, and through the Python API
(trainlint.runtime.api) on in-memory models, each buggy model against a clean twin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures" / "runtime"

pytest_plugins = ["pytester"]


def trainlint_run(*args, timeout=240):
    cmd = [sys.executable, "-m", "trainlint", "run", *args]
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def run_json(script, *probes):
    args = ["--output-format", "json"]
    for p in probes:
        args += ["--probe", p]
    proc = trainlint_run(*args, "--", "python", str(script))
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def probe(data, name):
    return next(p for p in data["probes"] if p["name"] == name)


# -- end to end --------------------------------------------------------------------------------------------

def test_acceptance_batch_mixing_reports_the_offending_pairs():
    proc = trainlint_run("--", "python", "fixtures/runtime/batch_mixing.py")
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "batch-independence" in out and "PROBLEM" in out
    assert "sample pairs (i, j) have d out_i/d x_j != 0: (0,1)" in out
    assert "TL503" in out and "[found at runtime]" in out


def test_acceptance_double_softmax_tl103_confirmed_by_overfit_one_batch():
    proc = trainlint_run("--", "python", "fixtures/runtime/double_softmax.py")
    assert proc.returncode == 1, proc.stderr
    assert "TL103" in proc.stdout and "confirmed by overfit-one-batch" in proc.stdout
    assert "TL502" not in proc.stdout  # the static finding already says it


E2E = [
    ("batch_mixing.py", "batch-independence", "TL503"),
    ("ignores_input.py", "input-independent-baseline", "TL504"),
    ("dead_relu.py", "dead-units", "TL505"),
    ("exploding_rnn.py", "gradient-health", "TL506"),
    ("unnormalized.py", "input-normalization", "TL507"),
    ("summed_loss.py", "loss-reduction", "TL508"),
]


@pytest.mark.parametrize("script,name,code", E2E, ids=[e[0] for e in E2E])
def test_buggy_fixture_and_its_clean_twin(script, name, code):
    rc, data = run_json(FIX / script, name)
    p = probe(data, name)
    assert rc == 1 and p["verdict"] == "problem", p
    assert p["code"] == code and p["doc_url"].endswith(f"rules/{code}.md")
    (f,) = [f for f in data["findings"] if f["code"] == code]
    assert f["runtime"]["found_at_runtime"] is True


def test_double_softmax_json_confirms_tl103():
    rc, data = run_json(FIX / "double_softmax.py", "overfit-one-batch")
    p = probe(data, "overfit-one-batch")
    assert p["verdict"] == "problem" and p["confirms"]["TL103"] is True
    final = p["metrics"]["attempts"][-1]["final_loss"]
    assert 1.3 < final < 1.8  # the double-softmax floor (ln(e+9)-1 = 1.46 for 10 classes)
    (f,) = [f for f in data["findings"] if f["code"] == "TL103"]
    assert f["runtime"]["status"] == "confirmed" and f["runtime"]["probe"] == "overfit-one-batch"


NEW_CLEAN = ["double_softmax_clean.py", "batch_mixing_clean.py", "ignores_input_clean.py", "dead_relu_clean.py",
             "exploding_rnn_clean.py", "unnormalized_clean.py", "summed_loss_clean.py"]


@pytest.mark.parametrize("script", NEW_CLEAN)
def test_new_clean_fixture_passes_every_probe(script):
    from trainlint.runtime import PROBE_NAMES

    # (determinism reruns the script three times: test_runtime.py covers it on the older twins)
    rc, data = run_json(FIX / script, *[n for n in PROBE_NAMES if n != "determinism"])
    assert len(data["probes"]) == len(PROBE_NAMES) - 1
    for p in data["probes"]:
        assert p["verdict"] in ("ok", "skipped"), p
    assert data["findings"] == [] and rc == 0


def test_sarif_carries_probe_only_rules():
    proc = trainlint_run("--output-format", "sarif", "--probe", "loss-reduction", "--", "python",
                         "fixtures/runtime/summed_loss.py")
    assert proc.returncode == 1, proc.stderr
    run = json.loads(proc.stdout)["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert "TL508" in rules and rules["TL508"]["name"] == "summed-loss"
    assert any(r["ruleId"] == "TL508" for r in run["results"])


# -- API on in-memory models --------------------------------------------------------------------------------

def cls_batch(n=32, d=16, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return x, y % c


def reg_batch(n=32, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x[:, :1] * 1.5 - 0.5
    return x, (y - y.mean()) / y.std()


def mlp(d_in=16, d_out=4, seed=0, last=None):
    torch.manual_seed(seed)
    layers = [nn.Linear(d_in, 32), nn.ReLU(), nn.Linear(32, d_out)]
    return nn.Sequential(*layers, *([last] if last is not None else []))


def one(name, *args, **kw):
    from trainlint.runtime.api import check

    (res,) = check(*args, probes=[name], **kw)
    return res


def test_api_loss_at_init():
    x, y = cls_batch()
    assert one("loss-at-init", mlp(), (x, y), F.cross_entropy).verdict == "ok"
    bad = mlp()
    with torch.no_grad():
        bad[2].weight.mul_(50.0)  # confident wrong logits at init
    res = one("loss-at-init", bad, (x, y), F.cross_entropy)
    assert res.verdict == "problem" and res.metrics["ratio"] > 3 and res.found == ["TL501"]


def test_api_overfit_one_batch_double_softmax():
    x, y = cls_batch(c=4)
    res = one("overfit-one-batch", mlp(last=nn.Softmax(dim=1)), (x, y), F.cross_entropy)
    assert res.verdict == "problem" and res.confirms["TL103"] is True
    res = one("overfit-one-batch", mlp(), (x, y), F.cross_entropy)
    assert res.verdict == "ok" and res.confirms == {"TL103": False, "TL206": False}


def test_api_overfit_one_batch_lr_too_high_confirms_tl206():
    x, y = reg_batch()
    model = mlp(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    res = one("overfit-one-batch", model, (x, y), F.mse_loss, optimizer=opt)
    assert res.verdict == "problem" and res.confirms.get("TL206") is True, res.evidence


class Mixer(nn.Module):
    def __init__(self, mix):
        super().__init__()
        self.mix, self.lin, self.head = mix, nn.Linear(4, 8), nn.Linear(8, 1)

    def forward(self, seq):
        b, t, f = seq.shape
        h = seq.view(t, b, f) if self.mix else seq.permute(1, 0, 2)
        return self.head(self.lin(h).mean(0))


def test_api_batch_independence():
    x = torch.randn(8, 6, 4)
    from trainlint.runtime.api import assert_batch_independent

    assert_batch_independent(Mixer(False), x)
    with pytest.raises(AssertionError, match=r"TL503 batch-independence: PROBLEM.*\(0,1\)"):
        assert_batch_independent(Mixer(True), x)


class Ignores(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = mlp()

    def forward(self, x):
        return self.body(torch.zeros_like(x))


def test_api_input_independent_baseline():
    x, y = cls_batch()
    assert one("input-independent-baseline", Ignores(), (x, y), F.cross_entropy).verdict == "problem"
    assert one("input-independent-baseline", mlp(), (x, y), F.cross_entropy).verdict == "ok"


def test_api_dead_units():
    x, y = reg_batch()
    model = mlp(8, 1)
    assert one("dead-units", model, (x, y), F.mse_loss).verdict == "ok"
    nn.init.constant_(model[0].bias, -10.0)
    res = one("dead-units", model, (x, y), F.mse_loss)
    assert res.verdict == "problem" and res.metrics["layers"][0]["dead_share"] == 1.0


def test_api_gradient_health():
    x, y = reg_batch()
    assert one("gradient-health", mlp(8, 1), (x, y), F.mse_loss).verdict == "ok"
    frozen_path = mlp(8, 1)

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.spare = frozen_path, nn.Linear(8, 1)

        def forward(self, x):
            return self.net(x)

    res = one("gradient-health", Unused(), (x, y), F.mse_loss)
    assert res.verdict == "problem" and "spare.weight" in res.metrics["none_grad"]

    class Nan(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 1)

        def forward(self, x):
            return self.b(torch.log(self.a(x)))  # log of negatives: NaN

    res = one("gradient-health", Nan(), (x, y), F.mse_loss)
    assert res.verdict == "problem" and "NaN/Inf" in res.evidence and res.confirms["TL203"] is True


def test_api_input_normalization():
    x, y = reg_batch()
    assert one("input-normalization", mlp(8, 1), (x, y), F.mse_loss).verdict == "ok"
    res = one("input-normalization", mlp(8, 1), (x * 80 + 128, y * 400 + 2500), F.mse_loss)
    assert res.verdict == "problem" and len(res.metrics["tensors"]) == 2


def test_api_loss_reduction():
    x, y = reg_batch()
    assert one("loss-reduction", mlp(8, 1), (x, y), F.mse_loss).verdict == "ok"
    res = one("loss-reduction", mlp(8, 1), (x, y), nn.MSELoss(reduction="sum"))
    assert res.verdict == "problem" and abs(res.metrics["ratio"] - 2.0) < 1e-3


def test_api_leaves_the_model_untouched_and_assert_trains():
    from trainlint.runtime.api import assert_trains, check

    x, y = cls_batch()
    model = mlp()
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    results = check(model, (x, y), F.cross_entropy)
    assert [r.verdict for r in results if r.verdict == "problem"] == []
    assert not model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert_trains(model, (x, y), F.cross_entropy)
    with pytest.raises(AssertionError, match="TL502 overfit-one-batch"):
        assert_trains(mlp(last=nn.Softmax(dim=1)), (x, y), F.cross_entropy)


def test_pytest_plugin_fixture(pytester):
    pytester.makepyfile(textwrap_dedent('''
        import torch

        def test_ok(trainlint_probes):
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
            x = torch.randn(16, 4)
            trainlint_probes.assert_trains(model, (x, x[:, :1]), torch.nn.functional.mse_loss)

        def test_fails(trainlint_probes):
            model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
            x = torch.randn(16, 4)
            trainlint_probes.assert_healthy(model, (x, x[:, :1]), torch.nn.MSELoss(reduction="sum"),
                                            probes=["loss-reduction"])
    '''))
    # the pytest11 entry point loads it in an install from this pyproject.toml; -p loads it in any install
    result = pytester.runpytest_subprocess("-p", "no:trainlint", "-p", "trainlint.runtime.pytest_plugin", "-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*TL508 loss-reduction: PROBLEM*"])


def textwrap_dedent(s):
    import textwrap

    return textwrap.dedent(s)


def test_pytest_plugin_is_registered_by_the_entry_point(pytester):
    pytester.makepyfile("def test_it(trainlint_probes):\n    assert callable(trainlint_probes.check)\n")
    result = pytester.runpytest_subprocess("-q")
    if "fixture 'trainlint_probes' not found" in result.stdout.str():
        pytest.skip("trainlint is installed without the pytest11 entry point (reinstall: pip install -e .)")
    result.assert_outcomes(passed=1)


def test_pytest_plugin_does_not_import_torch():
    code = "import sys, trainlint.runtime.pytest_plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
