"""``python -m trainlint``.

Python puts the current folder first on ``sys.path`` for ``-m``: a ``click.py``, ``libcst.py`` or
``pathspec.py`` of the user's project would be imported instead of trainlint's dependencies (the
``trainlint`` console script does not have the problem). As ``python -m pip`` does, drop that entry
before anything else is imported: trainlint itself is already imported, so nothing of it is lost.
"""

import os
import sys


def _drop_cwd_from_path() -> None:
    if not sys.path:
        return
    first = sys.path[0]
    try:
        cwd = os.getcwd()
    except OSError:  # (the current folder was deleted)
        cwd = None
    if first == "" or (cwd is not None and os.path.abspath(first) == cwd):
        sys.path.pop(0)


_drop_cwd_from_path()

from trainlint.cli import main  # noqa: E402  (after the path fix, on purpose)

if __name__ == "__main__":  # pragma: no cover
    main()
