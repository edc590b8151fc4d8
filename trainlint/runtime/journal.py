"""An undo journal for the determinism probe's fresh run: the user's files end as one run of the script left them.

The fresh run (a second run of the whole script, stopped after its first steps) may write anywhere: its working
folder, ``--save-dir /tmp/x``, ``--log-dir ../runs``, the home folder. In its processes (the script's own, forked
children, which inherit the hook, and spawned children, whose command line installs it: see
:mod:`trainlint.runtime.child`) a :func:`sys.addaudithook` hook sees every file operation Python makes before it
happens (``open`` for writing, ``os.remove``, ``os.rename``/``os.replace``, ``os.mkdir``, ``os.rmdir``,
``shutil.rmtree``, ``os.truncate``, ``os.symlink``, ``os.link``, ``os.utime``), and ``torch.save`` to a path
(whose file C++ opens) is wrapped alike. The first time a path is touched, the hook appends a line to the journal
(flushed before the operation goes on) and keeps a copy of the path as it was. :func:`undo`, run by the watched
process after the fresh run has been ended, walks the journal backwards: what did not exist is removed, what
existed is put back (contents and modification time).

A write that cannot be undone is refused: past ``MAX_BACKUP`` bytes of copies, or when the copy fails, the
operation raises ``PermissionError`` in the fresh run (which then ends; the probe says it was skipped). Writes
from C code other than torch.save, and from programs the script starts, are not seen: the probe's folder
snapshot of the working folder and the script's folder (``determinism.Guard``) covers those two.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from typing import Any, Dict, List, Optional

ENV = "TRAINLINT_JOURNAL"
MAX_BACKUP = 512 * 1024 * 1024
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
#: audit event -> positions of the path arguments it changes, and whether the path itself (a link) or what it
#: points to is changed
_EVENTS = {"os.remove": ((0,), False), "os.rename": ((0, 1), False), "os.mkdir": ((0,), False),
           "os.rmdir": ((0,), False), "shutil.rmtree": ((0,), False), "os.truncate": ((0,), True),
           "os.symlink": ((1,), False), "os.link": ((1,), False), "os.utime": ((0,), True)}


class _Journal:
    def __init__(self, folder: str, skip: List[str]):
        self.folder = folder
        self.copies = os.path.join(folder, "copies")
        os.makedirs(self.copies, exist_ok=True)
        self.fd = os.open(os.path.join(folder, "journal.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.skip = [os.path.realpath(s).rstrip(os.sep) + os.sep for s in skip + [folder]] + ["/proc/", "/dev/",
                                                                                               "/sys/"]
        self.seen: set = set()
        self.pid = os.getpid()
        self.count = 0
        self.size = 0
        self.busy = threading.local()

    def _path(self, p: Any, follow: bool) -> Optional[str]:
        if isinstance(p, int) or p is None:
            return None  # a file descriptor: its path was journaled when it was opened
        try:
            p = os.fsdecode(os.fspath(p))
        except TypeError:
            return None
        p = os.path.abspath(p)
        if follow:
            p = os.path.realpath(p)
        else:  # the entry itself, in its real folder
            p = os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))
        if "__pycache__" in p or any((p + os.sep).startswith(s) for s in self.skip):
            return None
        return p

    def note(self, path: str) -> None:
        """Keep ``path`` as it is now (once per path and process); raises PermissionError when it cannot."""
        if os.getpid() != self.pid:  # a forked child: its own names for the copies
            self.pid = os.getpid()
            self.count = 0
        if path in self.seen:
            return
        self.count += 1
        entry: Dict[str, Any] = {"path": path}
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            entry["kind"] = "absent"
        except OSError as exc:
            raise PermissionError(f"trainlint: cannot record {path} before a fresh run changes it: {exc}")
        else:
            import stat

            copy = os.path.join(self.copies, f"{self.pid}-{self.count}")
            try:
                if stat.S_ISLNK(st.st_mode):
                    entry.update(kind="link", target=os.readlink(path))
                elif stat.S_ISDIR(st.st_mode):
                    entry.update(kind="dir")
                elif stat.S_ISREG(st.st_mode):
                    self.size += st.st_size
                    if self.size > MAX_BACKUP:
                        raise PermissionError(f"trainlint: the fresh run's writes outgrow what trainlint keeps to "
                                              f"undo them ({MAX_BACKUP >> 20} MiB); {path} is left as it is")
                    shutil.copy2(path, copy)
                    entry.update(kind="file", copy=copy)
                else:  # a FIFO, a socket, a device: what is written there is not kept on disk
                    self.seen.add(path)
                    return
            except PermissionError:
                raise
            except OSError as exc:
                raise PermissionError(f"trainlint: cannot keep a copy of {path} before a fresh run changes it: {exc}")
        os.write(self.fd, (json.dumps(entry) + "\n").encode())
        self.seen.add(path)

    def note_tree(self, root: str) -> None:
        """Before ``shutil.rmtree``: every path under it."""
        for d, dirs, files in os.walk(root, topdown=True):
            for name in dirs + files:
                p = os.path.join(d, name)
                if os.path.islink(p) or not os.path.isdir(p):
                    self.note(p)
        for d, dirs, files in os.walk(root, topdown=False):
            self.note(d)

    def hook(self, event: str, args: Any) -> None:
        if getattr(self.busy, "on", False):
            return
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                     (isinstance(flags, int) and bool(flags & _WRITE_FLAGS))
            if not writes:
                return
            targets = [(path, True)]
        elif event in _EVENTS:
            idx, follow = _EVENTS[event]
            targets = [(args[i], follow) for i in idx if i < len(args)]
        else:
            return
        self.busy.on = True
        try:
            for raw, follow in targets:
                p = self._path(raw, follow)
                if p is None:
                    continue
                if event == "shutil.rmtree" and os.path.isdir(p) and not os.path.islink(p):
                    self.note_tree(p)
                self.note(p)
        finally:
            self.busy.on = False


_ACTIVE: List[_Journal] = []


def install(folder: Optional[str] = None, skip: Optional[List[str]] = None) -> bool:
    """In a fresh run's process: journal into ``folder`` (default ``$TRAINLINT_JOURNAL``). Once per process."""
    folder = folder or os.environ.get(ENV)
    if not folder or _ACTIVE:
        return bool(_ACTIVE)
    skip = list(skip or [])
    if os.environ.get("TRAINLINT_TMP"):
        skip.append(os.environ["TRAINLINT_TMP"])
    j = _Journal(folder, skip)
    _ACTIVE.append(j)
    sys.addaudithook(j.hook)
    if "torch" in sys.modules:
        patch_torch_save()
    return True


def patch_torch_save() -> None:
    """torch.save to a path opens its file in C++ (no audit event): note the path first."""
    if not _ACTIVE:
        return
    try:
        import torch.serialization as ts
    except Exception:
        return
    orig = getattr(ts, "_open_zipfile_writer", None)
    if orig is None or getattr(orig, "_trainlint", False):
        return
    j = _ACTIVE[0]

    def _open_zipfile_writer(name_or_buffer, *a, **k):
        if isinstance(name_or_buffer, (str, bytes, os.PathLike)):
            j.hook("open", (name_or_buffer, "wb", 0))
        return orig(name_or_buffer, *a, **k)

    _open_zipfile_writer._trainlint = True
    ts._open_zipfile_writer = _open_zipfile_writer


def undo(folder: str) -> List[str]:
    """Put every path the journal in ``folder`` names back as it was; returns those that could not be."""
    try:
        with open(os.path.join(folder, "journal.jsonl"), encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    except OSError:
        return []
    first: Dict[str, Dict[str, Any]] = {}
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue  # (a line cut by the kill)
        first.setdefault(e["path"], e)
    failed: List[str] = []
    for e in reversed(list(first.values())):
        p = e["path"]
        try:
            _remove(p, keep_dir=e["kind"] == "dir")
            if e["kind"] == "file":
                os.makedirs(os.path.dirname(p), exist_ok=True)
                shutil.copy2(e["copy"], p)
            elif e["kind"] == "dir":
                os.makedirs(p, exist_ok=True)
            elif e["kind"] == "link":
                os.makedirs(os.path.dirname(p), exist_ok=True)
                os.symlink(e["target"], p)
        except OSError:
            failed.append(p)
    return failed


def _remove(p: str, keep_dir: bool) -> None:
    if os.path.islink(p) or (os.path.exists(p) and not os.path.isdir(p)):
        os.remove(p)
    elif os.path.isdir(p) and not keep_dir:
        shutil.rmtree(p)
