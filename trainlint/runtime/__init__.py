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
    "loss-at-init",
    "overfit-one-batch",
    "batch-independence",
    "input-independent-baseline",
    "dead-units",
    "gradient-health",
    "input-normalization",
    "loss-reduction",
)

#: Probe-only findings (no static rule emits them): code -> (name, probe, severity label, one-line summary).
#: Their catalogue pages come from the rule classes of :mod:`trainlint.rules.tl5xx_runtime_probes` (kept in step
#: by tests/test_catalogue.py); this table stays here so that the runner imports no rule module.
PROBE_CODES = {
    "TL501": ("loss-at-init", "loss-at-init", "warning",
              "The first loss is far from what a well-initialized last layer gives (ln C, Var(y))"),
    "TL502": ("cannot-overfit-one-batch", "overfit-one-batch", "error",
              "The model cannot drive the loss on one small batch close to zero"),
    "TL503": ("batch-mixing", "batch-independence", "error",
              "A sample's output depends on other samples of the batch (a view/reshape across the batch)"),
    "TL504": ("input-ignored", "input-independent-baseline", "error",
              "Training on zeroed inputs reaches the same loss: the model ignores its input"),
    "TL505": ("dead-units", "dead-units", "warning",
              "Most units of a ReLU-family layer never fire on the batch"),
    "TL506": ("unhealthy-gradients", "gradient-health", "warning",
              "None/zero/NaN gradients, vanishing or exploding layer gradients, or an update/weight ratio off"),
    "TL507": ("unnormalized-data", "input-normalization", "warning",
              "Inputs or regression targets are far from zero-mean, unit-scale"),
    "TL508": ("summed-loss", "loss-reduction", "info",
              "The loss is summed over the batch, not averaged: the gradient scales with the batch size"),
}
#: Probes whose problem is a symptom with many causes: their finding is left out when a static finding of the
#: same run was confirmed (that finding names the cause: a ReLU before a regression output can't overfit either).
SYMPTOM_PROBES = ("overfit-one-batch", "input-independent-baseline")


def probe_code_url(code: str) -> str:
    """The catalogue page of a probe-only code (``rules/TL503.md``), like any rule's."""
    from trainlint import docs_url

    return docs_url(code)


#: Exit codes of the shim process (the CLI maps them to its own 0/1/2).
SHIM_OK = 0
SHIM_USAGE = 2
SHIM_CRASH = 3  # the user's script raised before N steps
SHIM_NO_TRAINING = 4  # the script ended without a single optimizer step
SHIM_INTERNAL = 5  # the shim itself failed
