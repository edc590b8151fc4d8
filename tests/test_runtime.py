"""The runtime shim: `trainlint run` end to end on fixtures/runtime/, and the probes on in-memory models.

Needs torch (the `test` extra pins the CPU wheel); skipped without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures" / "runtime"
ALL_PROBES = ("output-range", "loss-clamp-zero-grad", "lr-trajectory", "determinism", "dropout-bn-variance-shift",
              "augmentation-active", "loss-at-init", "overfit-one-batch", "batch-independence",
              "input-independent-baseline", "dead-units", "gradient-health", "input-normalization", "loss-reduction")


def trainlint_run(*args, cwd=ROOT, timeout=240):
    cmd = [sys.executable, "-m", "trainlint", "run", *args]
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def run_json(script, *probes, extra=()):
    args = ["--output-format", "json", *extra]
    for p in probes:
        args += ["--probe", p]
    proc = trainlint_run(*args, "--", "python", str(script))
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def probe(data, name):
    return next(p for p in data["probes"] if p["name"] == name)


# -- end to end --------------------------------------------------------------------------------------------

def test_acceptance_relu_regression_prints_tl101_confirmed_with_evidence():
    proc = trainlint_run("--", "python", "fixtures/runtime/relu_regression.py")
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "TL101" in out
    assert "confirmed by output-range" in out
    assert "of targets < 0" in out and "model output min 0" in out
    # every probe is listed with a verdict
    for name in ALL_PROBES:
        assert name in out


def test_relu_regression_json_shape_and_evidence():
    code, data = run_json("fixtures/runtime/relu_regression.py", "output-range")
    assert code == 1
    assert set(data) >= {"findings", "probes"}
    (tl101,) = [f for f in data["findings"] if f["code"] == "TL101"]
    rt = tl101["runtime"]
    assert rt["status"] == "confirmed" and rt["probe"] == "output-range"
    m = rt["evidence"]["metrics"]
    assert m["share_targets_below_range"] > 0.3
    assert m["output_min"] >= 0.0 and m["last_activation"] == "ReLU"
    p = probe(data, "output-range")
    assert p["verdict"] == "problem" and set(p) >= {"name", "verdict", "reason", "metrics"}


BUGGY = [
    ("relu_regression.py", "output-range", "TL101"),
    ("clamped_loss.py", "loss-clamp-zero-grad", "TL202"),
    ("steplr_per_batch.py", "lr-trajectory", "TL201"),
    ("dropout_bn.py", "dropout-bn-variance-shift", "TL102"),
    ("unseeded.py", "determinism", "TL301"),
]


@pytest.mark.parametrize("script,name,code", BUGGY[1:], ids=[b[0] for b in BUGGY[1:]])
def test_buggy_fixture_is_confirmed_by_its_probe(script, name, code):
    rc, data = run_json(FIX / script, name)
    assert rc == 1
    p = probe(data, name)
    assert p["verdict"] == "problem", p
    assert p["confirms"].get(code) is True
    statuses = {f["code"]: f["runtime"]["status"] for f in data["findings"]}
    assert statuses.get(code) == "confirmed", data["findings"]


def test_eval_augmentation_in_a_custom_dataset_is_found_at_runtime():
    rc, data = run_json(FIX / "eval_augmentation.py", "augmentation-active")
    assert rc == 1
    p = probe(data, "augmentation-active")
    assert p["verdict"] == "problem"
    roles = {l["loader"]: (l["role"], l["random"]) for l in p["metrics"]["loaders"]}
    assert roles["val_loader"] == ("eval", True)
    (f,) = [f for f in data["findings"] if f["code"] == "TL303"]
    assert f["runtime"]["found_at_runtime"] is True and f["line"] == 29  # val_loader = DataLoader(...)


CLEAN = ["relu_regression_clean.py", "clamped_loss_clean.py", "steplr_per_batch_clean.py", "dropout_bn_clean.py",
         "unseeded_clean.py", "eval_augmentation_clean.py"]


@pytest.mark.parametrize("script", CLEAN)
def test_clean_twin_passes_every_probe(script):
    rc, data = run_json(FIX / script)
    assert [p["name"] for p in data["probes"]] == list(ALL_PROBES)
    for p in data["probes"]:
        assert p["verdict"] in ("ok", "skipped"), p
        if p["verdict"] == "skipped":
            assert p["reason"] and "not implemented" not in p["reason"]
    assert data["findings"] == []
    assert rc == 0


def test_python_dash_m_module(tmp_path):
    pkg = tmp_path / "proj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train.py").write_text((FIX / "relu_regression.py").read_text())
    proc = trainlint_run("--output-format", "json", "--probe", "output-range", "--", "python", "-m", "proj.train",
                         cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert probe(data, "output-range")["verdict"] == "problem"
    assert [f["code"] for f in data["findings"]] == ["TL101"]


def test_torchrun_two_processes_rank0_probes():
    proc = trainlint_run("--output-format", "json", "--timeout", "150", "--", "torchrun", "--nproc-per-node=2",
                         "fixtures/runtime/ddp_relu_regression.py")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert probe(data, "output-range")["verdict"] == "problem"
    assert probe(data, "determinism")["verdict"] == "skipped"
    assert data["run"]["captured"]["model"]["class"] == "Sequential"  # unwrapped from DistributedDataParallel
    assert [(f["code"], f["runtime"]["status"]) for f in data["findings"]] == [("TL101", "confirmed")]


def test_torchrun_option_parsing():
    from trainlint.runtime.runner import RunError, torchrun_parts

    script = str(FIX / "ddp_relu_regression.py")
    assert torchrun_parts(["torchrun", "--nproc-per-node", "2", "--standalone", script, "--lr", "1"]) == (
        ["--nproc-per-node", "2", "--standalone"], [script, "--lr", "1"])
    assert torchrun_parts(["python", "-m", "torch.distributed.run", "--nnodes=1", "-m", "pkg.train"]) == (
        ["--nnodes=1"], ["-m", "pkg.train"])
    assert torchrun_parts(["python", "train.py"]) is None
    with pytest.raises(RunError):
        torchrun_parts(["torchrun", "--no-python", "echo"])


def test_crash_before_n_steps_exit_2_with_the_scripts_traceback(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent("""\
        import torch
        model = torch.nn.Linear(3, 1)
        x = torch.randn(4, 5)
        out = model(x)  # wrong shape
        """))
    proc = trainlint_run("--", "python", str(script))
    assert proc.returncode == 2
    assert "crashed" in proc.stderr
    assert "crash.py\", line 4" in proc.stderr and "RuntimeError" in proc.stderr
    assert "trainlint/runtime" not in proc.stderr  # the shim's frames are not the user's business


def test_script_that_never_trains_is_told_so(tmp_path):
    script = tmp_path / "eval_only.py"
    script.write_text("import torch\nmodel = torch.nn.Linear(3, 1)\nprint(model(torch.randn(2, 3)))\n")
    proc = trainlint_run("--", "python", str(script))
    assert proc.returncode == 2
    assert "without a single optimizer step" in proc.stderr


def test_hang_is_stopped_by_the_timeout(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text("import time\nimport torch\nwhile True:\n    time.sleep(0.1)\n")
    proc = trainlint_run("--timeout", "8", "--", "python", str(script))
    assert proc.returncode == 2
    assert "did not reach 3 training steps" in proc.stderr


def test_usage_errors():
    proc = trainlint_run("--", "torchrun", "--nproc_per_node=2", "no/such/train.py")
    assert proc.returncode == 2 and "no such script" in proc.stderr
    proc = trainlint_run("--", "bash", "train.sh")
    assert proc.returncode == 2 and "cannot run" in proc.stderr
    proc = trainlint_run("--", "python", "no/such/script.py")
    assert proc.returncode == 2 and "no such script" in proc.stderr
    proc = trainlint_run("--probe", "nope", "--", "python", "fixtures/runtime/relu_regression.py")
    assert proc.returncode == 2 and "unknown probe" in proc.stderr


def test_sarif_carries_the_runtime_verdicts():
    proc = trainlint_run("--output-format", "sarif", "--probe", "loss-clamp-zero-grad", "--", "python",
                         "fixtures/runtime/clamped_loss.py")
    assert proc.returncode == 1, proc.stderr
    log = json.loads(proc.stdout)
    run = log["runs"][0]
    (res,) = run["results"]
    assert res["ruleId"] == "TL202" and res["properties"]["runtime"]["status"] == "confirmed"
    assert run["properties"]["probes"][0]["name"] == "loss-clamp-zero-grad"
    import jsonschema

    schema = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(schema).validate(log)


def test_cli_does_not_import_torch():
    code = "import sys, trainlint.cli, trainlint.runtime.runner; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- API level: the hooks and probes on in-memory models ---------------------------------------------------

def watch(train, steps=3):
    """Run ``train()`` under the hooks until ``steps`` optimizer steps; return the capture."""
    from trainlint.runtime.capture import Capture, Hooks, StopTraining, harvest_names

    cap = Capture(max_steps=steps, user_roots=[str(Path(__file__).parent)])
    hooks = Hooks(cap)
    hooks.install()
    try:
        train()
    except StopTraining as exc:
        harvest_names(exc.__traceback__, cap)
    finally:
        hooks.remove()
    return cap


def regression_loop(model, y_shift=0.0, clamp=None, dropout_model=None):
    def train():
        torch.manual_seed(0)
        x = torch.randn(64, 4)
        y = x[:, :1] + y_shift
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(10):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            if clamp is not None:
                loss = loss.clamp(max=clamp)
            loss.backward()
            opt.step()
    return train


def run_probe(name, cap, argv=()):
    from trainlint.runtime.probes import ProbeContext, registry

    return registry()[name]().run(cap, 20.0, ProbeContext(argv=list(argv), cwd=str(ROOT)))


def test_api_output_range_relu_vs_linear():
    relu = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1), torch.nn.Sigmoid())
    res = run_probe("output-range", watch(regression_loop(relu)))
    assert res.verdict == "problem" and res.metrics["last_activation"] == "Sigmoid"
    assert res.metrics["share_targets_below_range"] > 0.3
    linear = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    res = run_probe("output-range", watch(regression_loop(linear)))
    assert res.verdict == "ok" and res.confirms == {"TL101": False}


def test_api_probe_leaves_the_model_untouched():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    cap = watch(regression_loop(model))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    mode = model.training
    for name in ("output-range", "dropout-bn-variance-shift"):
        run_probe(name, cap)
    assert model.training == mode
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_api_output_range_hand_written_loss_takes_targets_from_the_batch():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1), torch.nn.ReLU())

    def train():
        torch.manual_seed(0)
        x = torch.randn(128, 4)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x[:, :1] - 1.0), batch_size=16)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for xb, yb in loader:
            opt.zero_grad()
            (model(xb) - yb).abs().mean().backward()
            opt.step()

    res = run_probe("output-range", watch(train))
    assert res.verdict == "problem" and res.metrics["last_activation"] == "ReLU"
    assert res.location is not None and res.location["path"] == __file__  # the backward line, not torch's file


def test_api_loss_clamp_saturation():
    model = torch.nn.Linear(4, 1)
    res = run_probe("loss-clamp-zero-grad", watch(regression_loop(model, y_shift=100.0, clamp=1.0)))
    assert res.verdict == "problem"
    assert res.metrics["saturated_steps"] == 3 and res.metrics["zero_grad_steps"] == 3 and res.metrics["max"] == 1.0
    res = run_probe("loss-clamp-zero-grad", watch(regression_loop(torch.nn.Linear(4, 1), clamp=1e6)))
    assert res.verdict == "ok" and res.metrics["saturated_steps"] == 0


def test_api_dropout_before_batchnorm_shift():
    bad = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(16),
                              torch.nn.Linear(16, 1))
    res = run_probe("dropout-bn-variance-shift", watch(regression_loop(bad)))
    assert res.verdict == "problem" and res.metrics["worst_ratio"] > 1.5
    good = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                               torch.nn.Linear(16, 1))
    res = run_probe("dropout-bn-variance-shift", watch(regression_loop(good)))
    assert res.verdict == "ok"


def test_api_lr_trajectory_per_batch_and_per_epoch():
    def loop(per_batch):
        def train():
            model = torch.nn.Linear(4, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
            loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(400, 4), torch.randn(400, 1)),
                                                 batch_size=4)
            epochs = 90  # noqa: F841 (read by the shim from the frame)
            for _ in range(epochs):
                for x, y in loader:
                    opt.zero_grad()
                    torch.nn.functional.mse_loss(model(x), y).backward()
                    opt.step()
                    if per_batch:
                        sched.step()
                if not per_batch:
                    sched.step()
        return train

    res = run_probe("lr-trajectory", watch(loop(True)))
    assert res.verdict == "problem" and res.metrics["stepped_per_batch"] is True
    assert res.metrics["planned_scheduler_steps"] == 90 * 100
    res = run_probe("lr-trajectory", watch(loop(False)))
    assert res.verdict == "ok" and res.metrics["stepped_per_batch"] is False
    assert res.metrics["final_lr"] == pytest.approx(1e-4)


def test_api_scheduler_stepped_before_the_optimizer_confirms_tl205():
    def train():
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        for _ in range(10):
            sched.step()  # before optimizer.step(): the first LR (0.1) is never used
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(torch.randn(8, 4)), torch.randn(8, 1)).backward()
            opt.step()

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cap = watch(train)
    res = run_probe("lr-trajectory", cap)
    assert res.verdict == "problem" and res.confirms["TL205"] is True and "TL205" in res.to_dict()["found"]
    assert res.location is not None and res.location["path"] == __file__


def test_api_epochs_from_argv():
    from trainlint.runtime.probes.lr_trajectory import epochs_from_argv

    assert epochs_from_argv(["train.py", "--epochs", "12"]) == 12
    assert epochs_from_argv(["train.py", "--num-epochs=7"]) == 7
    assert epochs_from_argv(["train.py", "--lr", "3"]) is None
