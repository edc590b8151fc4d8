"""The optional runtime shim: ``trainlint run -- python train.py ARGS``.

The user's unchanged script runs under :mod:`trainlint.runtime.shim` (in a subprocess) with global PyTorch
hooks installed; after the first N optimizer steps the shim stops the script, runs the probes of
:mod:`trainlint.runtime.probes` on copies of what it captured, and writes a JSON result file that
:mod:`trainlint.runtime.runner` merges with the static findings of the same program.

Only ``shim``, ``capture`` and ``probes`` import torch (lazily, inside the shim's process); ``runner`` and
``merge`` import the standard library only, so ``trainlint.cli`` never imports torch.
"""

#: The probe names of the catalogue (docs/pitfalls.md, "Runtime probes"), in the order they run.
PROBE_NAMES = (
    "output-range",
    "loss-clamp-zero-grad",
    "lr-trajectory",
    "determinism",
    "dropout-bn-variance-shift",
    "augmentation-active",
)

#: Exit codes of the shim process (the CLI maps them to its own 0/1/2).
SHIM_OK = 0
SHIM_USAGE = 2
SHIM_CRASH = 3  # the user's script raised before N steps
SHIM_NO_TRAINING = 4  # the script ended without a single optimizer step
SHIM_INTERNAL = 5  # the shim itself failed
