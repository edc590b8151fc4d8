"""Runtime probes: one module per probe, each a :class:`Probe` with a catalogue ``name``.

``probe.run(capture, budget_s, ctx)`` returns a :class:`ProbeResult`. A probe works on copies
(:func:`model_copy`) on the device the script used, and checks ``Budget`` in its loops.
``confirms`` maps the rule codes this probe speaks for to True (the problem is there) or False (it is
not); a probe that cannot tell leaves a code out.

The TL5xx probes (loss-at-init ... loss-reduction) read the capture through
:func:`trainlint.runtime.probes._setup.get_setup`, so they also accept a ready ``Setup`` in place of the
capture: that is how :mod:`trainlint.runtime.api` runs them on in-memory objects. ``found`` names their
probe-only code (``PROBE_CODES`` in :mod:`trainlint.runtime`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Type

VERDICTS = ("ok", "problem", "skipped")


@dataclass
class ProbeResult:
    name: str
    verdict: str  # "ok" | "problem" | "skipped"
    reason: str
    metrics: Dict[str, Any] = field(default_factory=dict)
    series: Dict[str, List[float]] = field(default_factory=dict)
    confirms: Dict[str, bool] = field(default_factory=dict)
    evidence: str = ""  # one line for humans, e.g. "38% of targets < 0, model output min 0.0"
    seconds: float = 0.0
    location: Optional[Dict[str, Any]] = None  # {"path", "line"}: where a runtime-only finding points
    #: Codes a "problem" verdict is a finding of (default: the confirmed codes); a runtime-only finding is
    #: reported for each of them that the static pass missed.
    found: Optional[List[str]] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "reason": self.reason,
            "evidence": self.evidence,
            "metrics": self.metrics,
            "series": self.series,
            "confirms": self.confirms,
            "seconds": round(self.seconds, 3),
            "location": self.location,
            "found": (self.found if self.found is not None else [c for c, v in self.confirms.items() if v])
            if self.verdict == "problem" else [],
        }


@dataclass
class ProbeContext:
    """What the shim knows besides the capture: its own command line (for fresh runs) and options."""

    argv: List[str]  # the shim's target: ["train.py", ARGS...] or ["-m", "pkg.train", ARGS...]
    cwd: str
    device: str = "auto"
    env: Optional[Dict[str, str]] = None
    run_seconds: float = 0.0  # how long the watched run took to reach its N steps (imports included)
    world_size: int = 1  # > 1 under torchrun
    started: float = 0.0  # time.time() when the shim started, before the script ran
    #: The watched training ran in a multiprocessing child (Hogwild): its siblings may update the same shared
    #: parameters between its steps.
    in_child: bool = False
    process_name: Optional[str] = None  # the watched child's multiprocessing name ("Process-1")
    concurrent: bool = False  # other processes of the run trained too (Hogwild)


class Budget:
    """A probe's time: counted in this process's CPU seconds (on a busy machine a probe gets as many training
    steps as on an idle one, so its verdict does not depend on the load), and at most 3x that in wall time."""

    WALL_FACTOR = 3.0

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()
        self.cpu = time.process_time()

    @property
    def used(self) -> float:
        return max(time.process_time() - self.cpu, (time.perf_counter() - self.start) / self.WALL_FACTOR)

    @property
    def left(self) -> float:
        return self.seconds - self.used

    @property
    def expired(self) -> bool:
        return self.left <= 0


class Probe:
    name: str = ""
    #: Rule codes a problem of this probe confirms.
    codes: tuple = ()

    def run(self, capture: Any, budget_s: float, ctx: ProbeContext) -> ProbeResult:  # pragma: no cover
        raise NotImplementedError

    def result(self, verdict: str, reason: str, **kw: Any) -> ProbeResult:
        return ProbeResult(self.name, verdict, reason, **kw)

    def skipped(self, reason: str, **kw: Any) -> ProbeResult:
        return ProbeResult(self.name, "skipped", reason, **kw)


def model_device(model: Any, requested: str = "auto") -> Any:
    import torch

    if requested and requested != "auto":
        return torch.device(requested)
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def unwrap(model: Any) -> Any:
    """The module inside DataParallel / DistributedDataParallel / torch.compile wrappers."""
    for _ in range(4):
        name = type(model).__name__
        if name in ("DataParallel", "DistributedDataParallel") and hasattr(model, "module"):
            model = model.module
        elif name == "OptimizedModule" and hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            break
    return model


def model_copy(model: Any, device: Any) -> Any:
    """A deep copy of the model on ``device``; the user's model is left as it was.

    deepcopy shares functions: a module attribute ``self.mlpf = lambda x: m.c_proj(m.c_fc(x))`` (minGPT,
    makemore) would still call the original's layers, so such closures are rebuilt over the copies."""
    memo: Dict[int, Any] = {}
    src = unwrap(model)
    m = copy.deepcopy(src, memo)
    _rebind_closures(m, memo)
    return m.to(device)


def _rebind_closures(copied: Any, memo: Dict[int, Any]) -> None:
    import types

    for mod in copied.modules():
        for name, val in list(vars(mod).items()):
            if not isinstance(val, types.FunctionType) or not val.__closure__:
                continue
            cells = []
            changed = False
            for c in val.__closure__:
                try:
                    obj = c.cell_contents
                except ValueError:  # an empty cell
                    cells.append(c)
                    continue
                new = memo.get(id(obj), obj)
                changed = changed or new is not obj
                cells.append(types.CellType(new))
            if changed:
                f = types.FunctionType(val.__code__, val.__globals__, val.__name__, val.__defaults__, tuple(cells))
                f.__kwdefaults__ = val.__kwdefaults__
                setattr(mod, name, f)


def to_device(obj: Any, device: Any) -> Any:
    from trainlint.runtime.capture import _tree_map

    return _tree_map(obj, lambda t: t.to(device))


def call_model(model: Any, call: Any, device: Any) -> Any:
    args = to_device(call.args, device)
    kwargs = to_device(call.kwargs or {}, device)
    if not isinstance(args, tuple):
        args = (args,)
    return model(*args, **kwargs)


class probe_threads:
    """The probes work on small batches, where torch's intra-op threads cost more than they give (on a busy
    machine, 20x): one thread while they run, the script's own setting restored afterwards."""

    def __enter__(self):
        import torch

        self.prev = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.prev)
        return False


def registry() -> Dict[str, Type[Probe]]:
    from trainlint.runtime.probes.augmentation_active import AugmentationActive
    from trainlint.runtime.probes.determinism import Determinism
    from trainlint.runtime.probes.dropout_bn_variance_shift import DropoutBnVarianceShift
    from trainlint.runtime.probes.loss_clamp_zero_grad import LossClampZeroGrad
    from trainlint.runtime.probes.lr_trajectory import LrTrajectory
    from trainlint.runtime.probes.output_range import OutputRange

    from trainlint.runtime.probes.batch_independence import BatchIndependence
    from trainlint.runtime.probes.dead_units import DeadUnits
    from trainlint.runtime.probes.gradient_health import GradientHealth
    from trainlint.runtime.probes.input_independent_baseline import InputIndependentBaseline
    from trainlint.runtime.probes.input_normalization import InputNormalization
    from trainlint.runtime.probes.loss_at_init import LossAtInit
    from trainlint.runtime.probes.loss_reduction import LossReduction
    from trainlint.runtime.probes.overfit_one_batch import OverfitOneBatch

    classes = [OutputRange, LossClampZeroGrad, LrTrajectory, Determinism, DropoutBnVarianceShift, AugmentationActive,
               LossAtInit, OverfitOneBatch, BatchIndependence, InputIndependentBaseline, DeadUnits, GradientHealth,
               InputNormalization, LossReduction]
    return {c.name: c for c in classes}


def pct(x: float) -> str:
    return f"{100.0 * x:.0f}%"


def num(x: Optional[float]) -> str:
    if x is None:
        return "n/a"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.4g}"
    return f"{x:.3g}"
