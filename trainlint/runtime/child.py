"""The hooks in a child process started with multiprocessing's ``spawn`` (``torch.multiprocessing``, Hogwild).

Under ``trainlint run`` the shim rewrites a spawned child's command line to ``import trainlint.runtime.child;
install(); spawn_main(...)``: the child then watches its training as the script's own process does (the first
process of the run that steps is the watched one; see :mod:`trainlint.runtime.shim`). A child that never trains
(a DataLoader worker, a pool worker) only pays for the hooks' installation. The shim's options come through the
environment (``TRAINLINT_SHIM_CONFIG``, JSON), which children inherit.
"""

from __future__ import annotations

import json
import os


def install() -> None:
    try:
        cfg = json.loads(os.environ.get("TRAINLINT_SHIM_CONFIG") or "null")
    except ValueError:
        cfg = None
    if not isinstance(cfg, dict):
        return
    try:
        from trainlint.runtime import shim
        from trainlint.runtime.capture import Capture, Hooks
    except Exception:  # no torch here: nothing to watch
        return
    if cfg.get("losses_only"):  # a child of a determinism fresh run: its file changes are undone too
        from trainlint.runtime import journal

        journal.install(skip=[os.path.dirname(os.path.abspath(cfg["out"]))])
    cap = Capture(max_steps=max(1, int(cfg["steps"])), user_roots=list(cfg["roots"]))

    def on_step(steps: int) -> None:
        if not shim._claim(cfg["out"]):
            cap.off = True
        else:
            shim.progress_file(cfg["out"], steps)

    cap.on_step = on_step
    hooks = Hooks(cap, losses_only=bool(cfg.get("losses_only")))
    hooks.install()
    shim._count_children(cfg["out"])
    shim.patch_process_run(cap, hooks, cfg)
