"""trainlint: a linter for neural-network training code (PyTorch first).

The static path imports only libcst, click and the standard library; the optional
runtime shim (``trainlint[runtime]``) imports torch lazily.
"""

__version__ = "0.1.0"

DOCS_BASE_URL = "https://github.com/trainlint/trainlint/blob/main/rules/"


def docs_url(code: str) -> str:
    """Where a rule's generated page lives (the ``rules/`` catalogue)."""
    return f"{DOCS_BASE_URL}{code}.md"
