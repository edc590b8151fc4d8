"""Lay out the runtime benchmark's cases in a scratch folder: the scripts from fetched repositories and the
data they would download, synthesised.

    python benchmarks/runtime/setup.py [--scratch /tmp/trainlint-rtbench] [--mirror /work/.mirror] [CASE ...]

For each case of manifest.py: ``<scratch>/cases/<id>/`` receives the listed repository paths (``git --git-dir
<mirror>/<owner>+<name>/repo show <commit>:<path>``; a path ending in / is a folder) and its synthesised data.
The run script copies that folder afresh for every run, so each run starts from the same files.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from manifest import CASES, HEAVY  # noqa: E402

WORDS = ("the model learns a small batch of data and the loss falls when the gradient is right but a bug "
         "makes it rise or stay flat so we check every layer with care before we spend an hour on training").split()


def git_files(mirror: str, repo: str, commit: str, path: str):
    gitdir = os.path.join(mirror, repo.replace("/", "+"), "repo")
    if not os.path.isdir(gitdir):
        raise SystemExit(f"{repo} is not fetched: {gitdir} is missing (fetch github:{repo} first)")
    if path.endswith("/"):
        out = subprocess.run(["git", "--git-dir", gitdir, "ls-tree", "-r", "--name-only", commit, path],
                             check=True, capture_output=True, text=True).stdout.split()
    else:
        out = [path]
    for p in out:
        data = subprocess.run(["git", "--git-dir", gitdir, "show", f"{commit}:{p}"], check=True,
                              capture_output=True).stdout
        yield p, data


def _images(n: int, size: int, channels: int, classes: int, rng: random.Random):
    """Class-dependent patterns plus noise (a learnable task), as bytes, and the labels."""
    import numpy as np

    g = np.random.default_rng(rng.randrange(1 << 30))
    protos = g.integers(0, 256, size=(classes, channels, size, size)).astype(np.float32)
    labels = g.integers(0, classes, size=n)
    imgs = protos[labels] * 0.7 + g.integers(0, 256, size=(n, channels, size, size)) * 0.3
    return imgs.clip(0, 255).astype(np.uint8), labels.astype(np.uint8)


def mnist(root: str, rng: random.Random) -> None:
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    for prefix, n in (("train", 640), ("t10k", 200)):
        imgs, labels = _images(n, 28, 1, 10, rng)
        with open(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), "wb") as fh:
            fh.write(struct.pack(">IIII", 2051, n, 28, 28) + imgs.tobytes())
        with open(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), "wb") as fh:
            fh.write(struct.pack(">II", 2049, n) + labels.tobytes())


def cifar10(root: str, rng: random.Random) -> None:
    d = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(d, exist_ok=True)
    names = ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]
    for name in names:
        imgs, labels = _images(64 if name != "test_batch" else 100, 32, 3, 10, rng)
        with open(os.path.join(d, name), "wb") as fh:
            pickle.dump({"data": imgs.reshape(len(labels), -1), "labels": [int(x) for x in labels]}, fh)
    with open(os.path.join(d, "batches.meta"), "wb") as fh:
        pickle.dump({"label_names": ["c%d" % i for i in range(10)]}, fh)


def sentences(n_words: int, rng: random.Random) -> str:
    out, line = [], []
    for _ in range(n_words):
        line.append(rng.choice(WORDS))
        if len(line) >= rng.randint(6, 14):
            out.append(" ".join(line) + " .")
            line = []
    return "\n".join(out) + "\n"


def text(path: str, rng: random.Random) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as fh:  # (minGPT's chargpt samples from the prompt "O God, O God!")
        fh.write("O God, O God!\n" + sentences(4000, rng))


def names(path: str, rng: random.Random) -> None:
    syll = ["an", "el", "ia", "mo", "ra", "ke", "li", "so", "ta", "vi", "en", "or"]
    with open(path, "w") as fh:
        for _ in range(2000):
            fh.write("".join(rng.choice(syll) for _ in range(rng.randint(2, 4))) + "\n")


def wikitext(d: str, rng: random.Random) -> None:
    os.makedirs(d, exist_ok=True)
    for name, n in (("train.txt", 6000), ("valid.txt", 800), ("test.txt", 800)):
        with open(os.path.join(d, name), "w") as fh:
            fh.write(sentences(n, rng))


def shakespeare_char(d: str, rng: random.Random) -> None:
    import numpy as np

    os.makedirs(d, exist_ok=True)
    data = sentences(30000, rng)
    chars = sorted(set(data))
    stoi = {c: i for i, c in enumerate(chars)}
    n = len(data)
    for name, part in (("train.bin", data[: int(n * 0.9)]), ("val.bin", data[int(n * 0.9):])):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(os.path.join(d, name))
    with open(os.path.join(d, "meta.pkl"), "wb") as fh:
        pickle.dump({"vocab_size": len(chars), "itos": {i: c for c, i in stoi.items()}, "stoi": stoi}, fh)


def bsds300(d: str, rng: random.Random) -> None:
    import numpy as np
    from PIL import Image

    for part, n in (("train", 16), ("test", 4)):
        out = os.path.join(d, "BSDS300", "images", part)
        os.makedirs(out, exist_ok=True)
        g = np.random.default_rng(rng.randrange(1 << 30))
        for i in range(n):
            base = np.linspace(0, 255, 256)[None, :, None] * np.ones((256, 256, 3))
            img = (base * 0.6 + g.integers(0, 256, size=(256, 256, 3)) * 0.4).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(out, f"{i:04d}.jpg"))


def sine(path: str, rng: random.Random) -> None:
    import numpy as np
    import torch

    np.random.seed(2)
    T, L, N = 20, 100, 12  # generate_sine_wave.py's recipe (T=20) on fewer, shorter series
    x = np.empty((N, L), np.int64)
    x[:] = np.array(range(L)) + np.random.randint(-4 * T, 4 * T, N).reshape(N, 1)
    data = np.sin(x / 1.0 / T).astype("float64")
    torch.save(data, open(path, "wb"))


KINDS = {"mnist": mnist, "cifar10": cifar10, "text": text, "names": names, "wikitext": wikitext,
         "shakespeare_char": shakespeare_char, "bsds300": bsds300, "sine": sine}


def prepare(case: dict, scratch: str, mirror: str) -> str:
    root = os.path.join(scratch, "cases", case["id"])
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    repo, commit = case["repo"]
    for p in case["paths"]:
        for rel, data in git_files(mirror, repo, commit, p):
            dest = os.path.join(root, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as fh:
                fh.write(data)
    cwd = os.path.join(root, case["cwd"])
    os.makedirs(cwd, exist_ok=True)
    for d in case.get("mkdirs", []):
        os.makedirs(os.path.join(cwd, d), exist_ok=True)
    rng = random.Random(case["id"])
    for spec in case["data"]:
        kind, rel = spec.split(":", 1)
        KINDS[kind](os.path.normpath(os.path.join(cwd, rel)), rng)
    return root


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scratch", default="/tmp/trainlint-rtbench")
    ap.add_argument("--mirror", default="/work/.mirror")
    ap.add_argument("cases", nargs="*")
    a = ap.parse_args()
    for case in CASES + HEAVY:
        if (a.cases and case["id"] not in a.cases) or (case in HEAVY and case["id"] not in a.cases):
            continue
        print(f"{case['id']}: {prepare(case, a.scratch, a.mirror)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
