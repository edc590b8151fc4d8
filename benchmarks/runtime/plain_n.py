"""``python plain_n.py N SCRIPT ARGS``: run SCRIPT unchanged and stop it after N training steps (optimizer steps;
without an optimizer, the backward passes), then exit as trainlint's shim does. The hooks only count: this is
the plain time for the same steps that ``trainlint run --steps N`` watches.
"""

import os
import runpy
import sys
import time


class _Stop(BaseException):
    pass


def main() -> None:
    n = int(sys.argv[1])
    script = sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    import torch
    import torch.optim.optimizer as oo

    count = {"steps": 0, "backward": 0, "optimizer": False}

    def pre(opt, a, k):  # an optimizer steps: its backward passes are no steps (LBFGS runs 20 inside one)
        count["optimizer"] = True

    def post(opt, a, k):
        count["steps"] += 1
        if count["steps"] >= n:
            raise _Stop()

    oo.register_optimizer_step_pre_hook(pre)
    oo.register_optimizer_step_post_hook(post)
    orig = torch.Tensor.backward

    def backward(t, *a, **k):
        if count["steps"] == 0 and not count["optimizer"]:
            count["backward"] += 1
            if count["backward"] > n:
                raise _Stop()
        return orig(t, *a, **k)

    torch.Tensor.backward = backward
    t0 = time.perf_counter()
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except _Stop:
        pass
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.write(f"\nplain_n: {count} in {time.perf_counter() - t0:.2f} s\n")
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
