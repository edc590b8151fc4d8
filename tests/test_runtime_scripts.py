"""`trainlint run` on the kinds of script people run (issue 11) and its process hygiene (issue 14): models that
return dicts and compute their own loss, training without torch.optim, LBFGS closures, GAN loops, sequence
outputs, side effects and helper processes, signals, bad options, scripts that end themselves.

The end-to-end tests start `trainlint run` (tens of seconds each on 2 cores): marked slow.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures" / "runtime"


def trainlint(*args, cwd=ROOT, timeout=300, env=None):
    cmd = [sys.executable, "-m", "trainlint", "run", *args]
    e = dict(os.environ, NO_COLOR="1", **(env or {}))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e)


def run_json(script, *probes, cwd=ROOT, env=None, ok=(0, 1)):
    args = ["--output-format", "json"]
    for p in probes:
        args += ["--probe", p]
    proc = trainlint(*args, "--", "python", str(script), cwd=cwd, env=env)
    assert proc.returncode in ok, proc.stderr
    return json.loads(proc.stdout)


def probes_of(data):
    return {p["name"]: p for p in data["probes"]}


def no_probe_failed(data):
    failed = [(p["name"], p["reason"]) for p in data["probes"] if "the probe failed" in (p["reason"] or "")]
    assert not failed


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def tagged_alive(tag):
    """Live processes whose environment carries SIDE_EFFECTS_TAG=tag."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and alive(pid):
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    if f"SIDE_EFFECTS_TAG={tag}".encode() in fh.read().split(b"\0"):
                        out.append(int(pid))
            except OSError:
                continue
    return out


# -- scripts people run -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_model_with_its_own_loss_and_a_dict_of_sequence_outputs():
    data = run_json(FIX / "gpt_own_loss.py", "loss-at-init", "overfit-one-batch", "gradient-health", "dead-units",
                    "loss-reduction")
    no_probe_failed(data)
    p = probes_of(data)
    # the vocabulary (65) is the class dimension, not the 64 positions of the block
    assert p["loss-at-init"]["verdict"] == "ok" and p["loss-at-init"]["metrics"]["expected_from"] == "ln 65 classes"
    assert p["overfit-one-batch"]["verdict"] == "ok"
    # dead-units counts the 64 features of the MLP, not the 64 positions... and a GELU layer is not dead
    layers = p["dead-units"]["metrics"]["layers"]
    assert layers and all(l["units"] == 64 for l in layers) and p["dead-units"]["verdict"] == "ok"
    assert p["loss-reduction"]["verdict"] == "ok"


@pytest.mark.slow
def test_training_without_torch_optim_is_seen_and_probed():
    data = run_json(FIX / "manual_sgd.py", "loss-at-init", "overfit-one-batch", "input-independent-baseline")
    no_probe_failed(data)
    assert data["run"]["steps"] == 3 and data["run"]["captured"]["model"]["class"] == "Sequential"
    p = probes_of(data)
    assert p["loss-at-init"]["verdict"] == "ok"
    assert p["overfit-one-batch"]["verdict"] != "problem"
    # the probes copy the manual update as SGD at the LR it was measured to use (0.05)
    assert "SGD(lr=0.05" in p["overfit-one-batch"]["evidence"]


@pytest.mark.slow
def test_lbfgs_closure_loss_at_init_is_the_first_evaluation():
    data = run_json(FIX / "lbfgs_closure.py", "loss-at-init", "overfit-one-batch", "gradient-health")
    no_probe_failed(data)
    p = probes_of(data)
    # the first loss of the closure at init (sin(3x) against a fresh network), not the last of 20 evaluations
    torch.manual_seed(0)
    x = torch.linspace(-2, 2, 64).unsqueeze(1)
    model = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    first = float(torch.nn.functional.mse_loss(model(x), torch.sin(3 * x)).detach())
    assert data["run"]["losses"][0] == pytest.approx(first, rel=1e-4)
    assert p["loss-at-init"]["metrics"]["initial_loss"] == pytest.approx(first, rel=1e-4)
    assert p["overfit-one-batch"]["verdict"] == "ok"


@pytest.mark.slow
def test_gan_loop_sigmoid_bce_and_a_target_changed_in_place():
    data = run_json(FIX / "gan_bce_inplace.py", "loss-at-init", "overfit-one-batch")
    no_probe_failed(data)
    assert data["run"]["captured"]["model"]["name"] == "netD"  # not the parameterless Normalize module
    p = probes_of(data)
    assert p["loss-at-init"]["metrics"]["expected_from"] == "ln 2 (binary)"
    assert p["overfit-one-batch"]["verdict"] == "ok", p["overfit-one-batch"]["evidence"]


@pytest.mark.slow
@pytest.mark.parametrize("method,n", [("spawn", 2), ("fork", 1)])
def test_hogwild_training_in_multiprocessing_children_is_watched_there(method, n):
    # the script's own process never steps: the first child that does is watched and probed; its siblings train
    # on, and the script still sees its children end with status 0 (else it exits 1: trainlint would say crash)
    data = run_json(FIX / "hogwild.py", "determinism", "overfit-one-batch", "gradient-health",
                    env={"START_METHOD": method, "NUM_PROCESSES": str(n)})
    no_probe_failed(data)
    assert data["run"]["steps"] == 3
    assert "multiprocessing child process Process-" in data["run"]["message"]
    assert data["run"]["captured"]["model"]["class"] == "Net"
    p = probes_of(data)
    assert p["overfit-one-batch"]["verdict"] == "ok" and p["gradient-health"]["verdict"] == "ok"
    det = p["determinism"]
    if n > 1:  # two children update the shared parameters at once: their losses depend on timing, by design
        assert det["verdict"] == "skipped" and "Hogwild" in det["reason"]
    else:  # one child: its fresh run watches the same child (it is seeded) and compares
        assert det["verdict"] == "ok", det


# -- side effects and processes ---------------------------------------------------------------------------

@pytest.mark.slow
def test_files_end_as_one_run_leaves_them_and_every_process_ends(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "side_effects.py").write_text((FIX / "side_effects.py").read_text())
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    pids = tmp_path / "pids.txt"
    tag = f"side-effects-{os.getpid()}-{time.time_ns()}"
    proc = trainlint("--output-format", "json", "--probe", "determinism", "--", "python", "side_effects.py",
                     cwd=work, env={"PIDS_FILE": str(pids), "TMPDIR": str(tmpdir), "SIDE_EFFECTS_TAG": tag})
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    det = probes_of(data)["determinism"]
    assert det["verdict"] == "ok", det  # the fresh run ran (and was undone)
    time.sleep(1.0)
    # one run's files: 3 steps watched, the third stopped inside optimizer.step()
    assert (work / "train.log").read_text() == "start\nstep 0\nstep 1\n"
    names = sorted(p.name for p in work.iterdir() if p.name != "__pycache__")
    assert [n for n in names if n.startswith("run-")] and len([n for n in names if n.startswith("run-")]) == 1
    assert [n for n in names if not n.startswith("run-")] == ["ckpt_0.pt", "ckpt_1.pt", "side_effects.py", "train.log"]
    # PIDS_FILE, outside the folder, ends as one run leaves it too (the fresh run's lines were undone): the
    # watched run's helpers (a multiprocessing child, a setsid subprocess) have ended, and so has every process
    # of the fresh run (they carry the same environment)
    listed = [int(x) for x in pids.read_text().split()]
    assert len(listed) == 2
    assert not [pid for pid in listed if alive(pid)]
    assert not tagged_alive(tag)
    assert not list(tmpdir.glob("trainlint-*"))  # trainlint's temp folders are gone (torch may keep its cache)


def _tree(root):
    """{relative path with digits masked: sha1 of the contents} (folders: None)."""
    import hashlib
    import re

    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            key = re.sub(r"\d{6,}", "#", os.path.relpath(p, root))
            out[key] = None if os.path.isdir(p) else hashlib.sha1(Path(p).read_bytes()).hexdigest()
    return out


@pytest.mark.slow
def test_files_written_outside_the_working_folder_end_as_one_run_leaves_them(tmp_path):
    # --save-dir elsewhere (absolute) and --log-dir ../runs (relative): the fresh run of the determinism probe
    # writes there too; without it (loss-at-init alone) the same script leaves the reference state
    trees = {}
    for label, probe in (("one-run", "loss-at-init"), ("with-fresh-run", "determinism")):
        base = tmp_path / label
        work, save = base / "project" / "work", base / "elsewhere" / "save"
        work.mkdir(parents=True)
        save.mkdir(parents=True)
        (work / "writes_elsewhere.py").write_text((FIX / "writes_elsewhere.py").read_text())
        (save / "history.txt").write_text("old\n")
        (save / "last.pt").write_text("the previous run's\n")
        os.utime(save / "history.txt", (1_000_000_000, 1_000_000_000))
        proc = trainlint("--output-format", "json", "--probe", probe, "--", "python", "writes_elsewhere.py",
                         "--save-dir", str(save), "--log-dir", "../runs", cwd=work)
        assert proc.returncode in (0, 1), proc.stderr
        data = json.loads(proc.stdout)
        p = probes_of(data)[probe]
        if probe == "determinism":
            assert p["verdict"] == "ok" and not p["metrics"]["not_restored"], p
        trees[label] = _tree(base)
        assert (save / "history.txt").read_text() == "old\nrun\n"
        assert (save / "prev.pt").read_text() == "the previous run's\n"
        assert (base / "project" / "runs" / "train.log").read_text().count("step") == 2
    assert trees["with-fresh-run"] == trees["one-run"]


def test_journal_undoes_what_a_process_changed(tmp_path):
    # an unrelated process (no torch) journals its changes; undo() puts everything back as it was
    area = tmp_path / "area"
    (area / "keep" / "sub").mkdir(parents=True)
    (area / "keep" / "sub" / "a.txt").write_text("a")
    (area / "log.txt").write_text("old\n")
    (area / "gone.txt").write_text("gone")
    (area / "moved.txt").write_text("moved")
    os.symlink("log.txt", area / "link")
    before = {k: v for k, v in _tree(area).items()}
    mtime = os.stat(area / "log.txt").st_mtime_ns
    journal = tmp_path / "journal"
    code = f"""
import os, shutil, sys
from trainlint.runtime import journal
journal.install({str(journal)!r})
a = {str(area)!r}
open(os.path.join(a, "log.txt"), "a").write("appended\\n")
open(os.path.join(a, "new.txt"), "w").write("new")
os.makedirs(os.path.join(a, "made", "deep"))
open(os.path.join(a, "made", "deep", "f"), "w").write("f")
os.remove(os.path.join(a, "gone.txt"))
os.replace(os.path.join(a, "moved.txt"), os.path.join(a, "target.txt"))
shutil.rmtree(os.path.join(a, "keep"))
os.remove(os.path.join(a, "link"))
fd = os.open(os.path.join(a, "raw.bin"), os.O_WRONLY | os.O_CREAT)
os.write(fd, b"raw"); os.close(fd)
open(os.path.join(a, "log.txt")).read()  # reading changes nothing
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=60)
    assert _tree(area) != before
    from trainlint.runtime import journal as jmod

    assert jmod.undo(str(journal)) == []
    assert _tree(area) == before
    assert os.path.islink(area / "link") and os.stat(area / "log.txt").st_mtime_ns == mtime


def test_journal_refuses_a_change_it_cannot_undo(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 4096)
    code = f"""
from trainlint.runtime import journal
journal.MAX_BACKUP = 1024
journal.install({str(tmp_path / 'journal')!r})
try:
    open({str(big)!r}, "ab").write(b"more")
except PermissionError as exc:
    print("refused:", exc)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60).stdout
    assert "refused:" in out and "outgrow" in out
    assert big.read_bytes() == b"x" * 4096


@pytest.mark.slow
def test_probes_end_before_the_timeout_when_a_fresh_run_is_slow(tmp_path):
    # the determinism probe's fresh run stalls (as a slow LBFGS script's does on a loaded machine): its budget
    # (2x the watched run, at least 20 s) would outlast --timeout 25; the probes end before it instead
    script = tmp_path / "stalls.py"
    script.write_text("import os, time\nimport torch\n"
                      "if os.environ.get('TRAINLINT_FRESH_ID'):\n    time.sleep(120)\n"
                      "torch.manual_seed(0)\nm = torch.nn.Linear(4, 1)\nopt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
                      "x = torch.randn(16, 4)\ny = x.sum(1, keepdim=True)\n"
                      "for _ in range(10):\n    opt.zero_grad()\n"
                      "    torch.nn.functional.mse_loss(m(x), y).backward()\n    opt.step()\n")
    t0 = time.monotonic()
    proc = trainlint("--output-format", "json", "--timeout", "25", "--probe", "determinism", "--probe",
                     "overfit-one-batch", "--", "python", str(script), cwd=tmp_path)
    took = time.monotonic() - t0
    assert proc.returncode in (0, 1), proc.stderr
    p = probes_of(json.loads(proc.stdout))
    assert p["determinism"]["verdict"] == "skipped" and "did not finish" in p["determinism"]["reason"]
    assert p["overfit-one-batch"]["verdict"] == "ok"
    assert took < 25 + 10  # (trainlint's own start and the static pass come on top of the script's 25 s)


def test_a_fresh_run_stops_at_its_last_loss(tmp_path):
    # determinism's fresh run needs the losses only: with --steps 2 it stops at the second loss, before that
    # step's backward (an LBFGS step is 20 of them); the script's log shows one backward done, not two
    script = tmp_path / "logs.py"
    log = tmp_path / "log.txt"
    script.write_text("import torch\ntorch.manual_seed(0)\nm = torch.nn.Linear(3, 1)\n"
                      "opt = torch.optim.SGD(m.parameters(), lr=0.1)\nx = torch.randn(8, 3)\n"
                      "for i in range(5):\n    opt.zero_grad()\n    loss = m(x).pow(2).mean()\n    loss.backward()\n"
                      f"    open({str(log)!r}, 'a').write(f'backward {{i}}\\n')\n    opt.step()\n")
    out = tmp_path / "fresh.json"
    proc = subprocess.run([sys.executable, "-m", "trainlint.runtime.shim", "--steps", "2", "--losses-only", "--out",
                           str(out), "--", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["status"] == "ok" and len(data["losses"]) == 2 and data["losses"][1] < data["losses"][0]
    assert log.read_text() == "backward 0\n"


def test_a_fresh_run_ends_with_its_process_group_and_every_process_it_marked():
    # the determinism probe ends its fresh run with the runner's end_processes (one way to end a run): the
    # shim, a child in its process group, and a grandchild in a session of its own that only the mark finds
    import uuid

    from trainlint.runtime.probes.determinism import Determinism

    mark = uuid.uuid4().hex
    code = ("import subprocess, sys\n"
            "sleep = [sys.executable, '-c', 'import time; time.sleep(120)']\n"
            "kids = [subprocess.Popen(sleep), subprocess.Popen(sleep, start_new_session=True)]\n"
            "print(' '.join(str(k.pid) for k in kids), flush=True)\n"
            "kids[0].wait()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, TRAINLINT_FRESH_ID=mark),
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    kids = []
    try:
        kids = [int(x) for x in proc.stdout.readline().split()]
        assert len(kids) == 2 and all(alive(k) for k in kids)
        Determinism._end(proc, mark)
        assert proc.returncode is not None
        deadline = time.monotonic() + 10
        while any(alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(k) for k in kids)
    finally:  # (nothing of the test left running when it fails)
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for k in kids:
            if alive(k):
                os.kill(k, signal.SIGKILL)


@pytest.mark.slow
def test_sigterm_ends_the_script_cleans_up_and_exits_2(tmp_path):
    script = tmp_path / "hang.py"
    pidfile = tmp_path / "pid"
    script.write_text("import os, time\nimport torch\n"
                      f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
                      "while True:\n    time.sleep(0.1)\n")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    proc = subprocess.Popen([sys.executable, "-m", "trainlint", "run", "--", "python", str(script)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pidfile.exists()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "interrupted by SIGTERM" in err
    time.sleep(1.0)
    assert not alive(int(pidfile.read_text()))
    assert not list(tmpdir.glob("trainlint-*"))


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_timeout_must_be_a_positive_finite_number(value):
    proc = trainlint("--timeout", value, "--", "python", "train.py", timeout=60)
    assert proc.returncode == 2 and "--timeout" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("ending,said", [
    ("os._exit(0)", "ended its process itself with os._exit(0) after 0 of the 3 training steps"),
    ("raise KeyboardInterrupt", "the script raised KeyboardInterrupt"),
])
def test_a_script_that_ends_itself_is_told_what_it_did(tmp_path, ending, said):
    script = tmp_path / "ends.py"
    script.write_text(f"import os\nimport torch\nprint('hello')\n{ending}\n")
    proc = trainlint("--", "python", str(script), cwd=tmp_path)
    assert proc.returncode == 2
    assert said in proc.stderr and "shim" not in proc.stderr and "trainlint/runtime" not in proc.stderr


@pytest.mark.slow
def test_json_output_and_report_after_a_failure(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text("import torch\nprint('loading')\nraise ValueError('no data here')\n")
    out = tmp_path / "report"
    proc = trainlint("--output-format", "json", "--report", str(out), "--", "python", str(script), cwd=tmp_path)
    assert proc.returncode == 2
    data = json.loads(proc.stdout)  # one valid JSON document, with the error
    assert "no data here" in data["error"]["message"] and "loading" in data["error"]["output"]
    assert data["probes"] == [] and data["findings"] == []
    page = (out / "report.html").read_text()
    assert "no data here" in page and "loading" in page
    assert json.loads((out / "trainlint-run.json").read_text())["error"]["message"] == data["error"]["message"]


# -- probe units ------------------------------------------------------------------------------------------

def test_each_probe_has_its_own_time_bound():
    from trainlint.runtime.shim import ProbeTimeout, _time_bound

    t = time.monotonic()
    with pytest.raises(ProbeTimeout):
        with _time_bound(0.3):
            time.sleep(5)
    assert time.monotonic() - t < 2.5
    with _time_bound(5):  # disarmed after the block
        pass
    time.sleep(0.1)


def test_api_dead_units_counts_channels_of_sequence_outputs():
    from trainlint.runtime.api import check

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 24), torch.nn.ReLU(), torch.nn.Linear(24, 5))
    x = torch.randn(4, 16, 8)  # (batch, time, features)
    res = check(model, (x, torch.randn(4, 16, 5)), torch.nn.functional.mse_loss, probes=["dead-units"])[0]
    assert res.metrics["layers"][0]["units"] == 24  # channels, not the 16 positions
    assert res.metrics["plot"]["bars"]["dead_share"] == ["1"]


def test_api_gradient_health_zero_over_zero_is_not_exploding():
    from trainlint.runtime.api import check

    class Frozen(torch.nn.Module):  # no gradient reaches either layer: reported as zero, never as exploding
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(4, 4)
            self.b = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.b(self.a(x)) * 0.0

    res = check(Frozen(), (torch.randn(8, 4), torch.randn(8, 2)), torch.nn.functional.mse_loss,
                probes=["gradient-health"])[0]
    assert res.verdict == "problem" and "all-zero gradient" in res.evidence
    assert "exploding" not in res.evidence and res.metrics["first_last_ratio"] is None


def test_api_lr_warmup_that_rises_is_reported_as_rising():
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).parent))
    from test_runtime import run_probe, watch

    def train():
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))  # warmup from 0.002
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(400, 4), torch.randn(400, 1)),
                                             batch_size=4)
        epochs = 3  # noqa: F841 (read by the shim from the frame)
        for _ in range(epochs):
            for x, y in loader:
                opt.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                opt.step()
                sched.step()

    res = run_probe("lr-trajectory", watch(train))
    assert res.verdict == "ok", res.evidence
    assert "rising to 0.1" in res.evidence and res.metrics["peak_lr"] == pytest.approx(0.1)


# -- the HTML report --------------------------------------------------------------------------------------

def test_html_draws_the_threshold_labels_layer_bars_and_keeps_legends_off_the_data():
    import re

    from trainlint.runtime.html import render

    losses = [2.0 * 0.99 ** i for i in range(200)]
    result = {"probes": [
        {"name": "overfit-one-batch", "verdict": "problem", "reason": "cannot overfit", "evidence": "accuracy 80%",
         "series": {"loss (Adam)": losses},
         "metrics": {"plot": {"thresholds": [{"value": 0.2, "label": "10% of the first loss", "series": "loss (Adam)"}]}}},
        {"name": "dead-units", "verdict": "ok", "reason": "fine", "series": {"dead_share": [0.1, 0.75]},
         "metrics": {"plot": {"bars": {"dead_share": ["features.1", "classifier.2"]},
                              "thresholds": [{"value": 0.7, "label": "70% dead"}]}}},
    ], "findings": []}
    page = render(result)
    assert 'data-threshold="10% of the first loss"' in page and 'data-threshold="70% dead"' in page
    assert ">features.1<" in page and ">classifier.2<" in page and 'data-series="classifier.2"' in page
    svg = page[page.index("<svg"):page.index("</svg>")]
    height = 220  # the axes' area; legend rows are below it
    for y in re.findall(r'<text class="legend" x="[^"]+" y="([^"]+)"', svg):
        assert float(y) > height - 10
    # the verdict is shown with the plot it was judged on
    assert re.search(r'overfit-one-batch <span class="problem">problem</span>', page)


def test_one_dead_relu_is_one_finding_that_names_its_consequences():
    from trainlint.report.base import Report
    from trainlint.runtime.runner import merge

    def p(name, verdict, evidence, found):
        return {"name": name, "verdict": verdict, "reason": f"{name} says so", "evidence": evidence,
                "confirms": {}, "found": found, "metrics": {}, "location": {"path": "train.py", "line": 3}}

    probes = [p("dead-units", "problem", "fc1: 30/32 units dead (94%)", ["TL505"]),
              p("gradient-health", "problem", "2 trainable parameter(s) get an all-zero gradient", ["TL506"]),
              p("overfit-one-batch", "problem", "Adam: loss 2.3 -> 2.3", ["TL502"]),
              p("loss-reduction", "problem", "x2", ["TL508"])]
    report = Report(findings=[], files_checked=0, rules={})
    merge(report, probes, "train.py")
    codes = sorted(f.code for f in report.findings)
    assert codes == ["TL505", "TL508"]  # TL506 and TL502 follow from the dead layer; TL508 does not
    (dead,) = [f for f in report.findings if f.code == "TL505"]
    assert "consequences" in dead.message and "all-zero gradient" in dead.message and "2.3 -> 2.3" in dead.message


def test_api_overfit_with_soft_bce_targets_is_judged_above_their_entropy():
    from trainlint.runtime.api import check

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 20), torch.nn.Sigmoid())
    x = torch.rand(16, 20)  # reconstruct pixel intensities (a VAE's BCE, summed): the loss never nears 0
    res = check(model, (x, x), lambda o, t: torch.nn.functional.binary_cross_entropy(o, t, reduction="sum"),
                probes=["overfit-one-batch"])[0]
    a = res.metrics["attempts"][0]
    assert a["loss_floor"] > 100 and res.verdict == "ok", res.evidence


def test_api_batch_independence_of_a_token_model_through_its_embeddings():
    from trainlint.runtime.api import check

    class Tokens(torch.nn.Module):
        def __init__(self, mix):
            super().__init__()
            self.emb, self.out, self.mix = torch.nn.Embedding(10, 8), torch.nn.Linear(8, 10), mix

        def forward(self, x):
            h = self.emb(x)
            return self.out(h + h.mean(0, keepdim=True) if self.mix else h)  # mix: averages over the batch

    torch.manual_seed(0)
    x, y = torch.randint(0, 10, (8, 5)), torch.randint(0, 10, (8, 5))

    def loss(o, t):
        return torch.nn.functional.cross_entropy(o.reshape(-1, 10), t.reshape(-1))

    assert check(Tokens(False), (x, y), loss, probes=["batch-independence"])[0].verdict == "ok"
    assert check(Tokens(True), (x, y), loss, probes=["batch-independence"])[0].verdict == "problem"


@pytest.mark.parametrize("batch_first,flatten", [(False, True), (False, False), (True, True)])
def test_api_batch_independence_finds_the_batch_dimension_of_sequence_models(batch_first, flatten):
    # word_language_model's shape: token ids (time, batch) into a batch_first=False LSTM, the output flattened
    # to (time * batch, vocab) or kept (time, batch, vocab); and the batch-first twin of
    # pytorch-tutorial's language model, flattened to (batch * time, vocab)
    from trainlint.runtime.api import check

    class LM(torch.nn.Module):
        def __init__(self, mix):
            super().__init__()
            self.emb, self.rnn = torch.nn.Embedding(12, 8), torch.nn.LSTM(8, 8, batch_first=batch_first)
            self.dec, self.mix = torch.nn.Linear(8, 12), mix

        def forward(self, x):
            h = self.emb(x)
            if self.mix:  # averages over the batch dimension
                b = 0 if batch_first else 1
                h = h + h.mean(b, keepdim=True)
            out, _ = self.rnn(h)
            out = self.dec(out)
            return out.reshape(-1, 12) if flatten else out

    torch.manual_seed(0)
    shape = (6, 10) if batch_first else (10, 6)  # 6 sequences of 10 tokens
    x, y = torch.randint(0, 12, shape), torch.randint(0, 12, shape)

    def loss(o, t):
        return torch.nn.functional.cross_entropy(o.reshape(-1, 12), t.reshape(-1))

    ok = check(LM(False), (x, y), loss, probes=["batch-independence"])[0]
    assert ok.verdict == "ok", ok.reason
    assert ok.metrics["samples"] == 6 and ok.metrics["batch_dim"] == (0 if batch_first else 1)
    assert check(LM(True), (x, y), loss, probes=["batch-independence"])[0].verdict == "problem"


def test_api_gradient_health_does_not_judge_an_lbfgs_step_by_its_size():
    # time_sequence_prediction after 3 LBFGS steps: near a minimum the step is tiny (10^-4.6 of the weights);
    # LBFGS sizes it by line search, not by an LR, so that is no unhealthy gradient
    from trainlint.runtime.api import check

    torch.manual_seed(0)
    x = torch.randn(64, 3, dtype=torch.double)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.double)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.8)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    res = check(model, (x, y), torch.nn.functional.mse_loss, optimizer=opt, probes=["gradient-health"])[0]
    assert min(res.metrics["update_ratio_log10"].values()) < -4  # what the SGD rule would call too small
    assert res.verdict == "ok" and res.metrics["update_ratio_judged"] is False, res.evidence


def test_api_input_independent_baseline_reuses_overfit_one_batchs_run():
    # both train a copy on the same 16 samples with the script's optimizer: the second probe reuses the first's
    # run (a dropout layer makes two separate runs differ: equal series can only be the same run)
    from trainlint.runtime.api import check

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(32, 3))
    x = torch.randn(16, 6)
    y = x[:, :3].argmax(1)
    res = check(model, (x, y), torch.nn.functional.cross_entropy, optimizer=torch.optim.Adam(model.parameters()),
                probes=["overfit-one-batch", "input-independent-baseline"])
    by = {r.name: r for r in res}
    overfit = by["overfit-one-batch"].series["loss (Adam(lr=0.001))"]
    real = by["input-independent-baseline"].series["loss (real inputs)"]
    assert len(real) >= 5 and real == overfit[:len(real)]
    assert by["input-independent-baseline"].verdict == "ok"


def test_api_overfit_judges_accuracy_in_the_mode_the_model_trained_in():
    # siamese_network's ResNet: after a few steps a BatchNorm's running statistics still lag its batch statistics,
    # so the eval-mode output is wrong (accuracy 38%) while the training loss fell to 0.7% of its start: that
    # model overfits (before: a false TL502/TL206, "only Adam 1e-3 gets there")
    from trainlint.runtime.api import check

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.BatchNorm1d(64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 2))
    x = torch.randn(16, 10) * 3 + 20
    y = torch.randint(0, 2, (16,))
    res = check(model, (x, y), torch.nn.functional.cross_entropy,
                optimizer=torch.optim.Adam(model.parameters(), lr=0.05), probes=["overfit-one-batch"])[0]
    assert res.verdict == "ok", res.evidence
    first = res.metrics["attempts"][0]
    assert first["steps"] < 50 and first["accuracy"] == 1.0


def test_a_model_copy_rebinds_closures_over_its_own_layers():
    from trainlint.runtime.api import check
    from trainlint.runtime.probes import model_copy

    class Block(torch.nn.Module):  # minGPT / makemore: the MLP is called through a lambda over a ModuleDict
        def __init__(self):
            super().__init__()
            self.mlp = torch.nn.ModuleDict(dict(c_fc=torch.nn.Linear(4, 8), c_proj=torch.nn.Linear(8, 2)))
            m = self.mlp
            self.mlpf = lambda x: m.c_proj(torch.tanh(m.c_fc(x)))

        def forward(self, x):
            return self.mlpf(x)

    model = Block()
    copy = model_copy(model, "cpu")
    copy(torch.randn(3, 4)).sum().backward()
    assert copy.mlp.c_fc.weight.grad is not None and model.mlp.c_fc.weight.grad is None
    res = check(model, (torch.randn(8, 4), torch.randn(8, 2)), torch.nn.functional.mse_loss,
                probes=["gradient-health"])[0]
    assert not res.metrics["none_grad"], res.evidence


def test_overfit_floor_of_next_tokens_that_share_a_prefix():
    from trainlint.runtime.probes._setup import Setup
    from trainlint.runtime.probes.overfit_one_batch import _loss_floor

    x = torch.tensor([[0, 1, 2], [0, 1, 3], [0, 4, 5]])  # every name starts with the start token 0
    y = torch.tensor([[1, 2, 9], [1, 3, 9], [4, 5, 9]])
    setup = Setup(model=None, device="cpu", args=(x,), kwargs={}, target=y.view(-1), loss_fn=None, loss_kind="nll")
    # after (0,): 1, 1 or 4; after (0, 1): 2 or 3; every other prefix has one next token
    expected = (-2 * math.log(2 / 3) - math.log(1 / 3) - 2 * math.log(1 / 2)) / 9
    assert _loss_floor(setup) == pytest.approx(expected)
    unique = Setup(model=None, device="cpu", args=(x[2:],), kwargs={}, target=y[2:].view(-1), loss_fn=None,
                   loss_kind="nll")
    assert _loss_floor(unique) == 0.0
