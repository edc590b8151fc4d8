"""Benchmark-only environment fixes, put on PYTHONPATH for the plain and the trainlint runs alike.

1. The torchvision wheel this machine has is a CUDA build next to a CPU torch: its C++ ops cannot load, and
   ``import torchvision`` then fails registering fake kernels for them (``operator torchvision::nms does not
   exist``). Registrations for ops that do not exist are skipped; nothing the benchmark scripts use needs them.
2. CIFAR-10's pickles are synthesised (no network): their md5 sums cannot match torchvision's table, so the
   CIFAR classes are told to skip the check.
"""

import sys


class _Compat:
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            self._patch_library()
        elif name == "torchvision.datasets.cifar":
            return self._after(name, path, target, self._patch_cifar)
        return None

    def _after(self, name, path, target, patch):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                orig = spec.loader.exec_module

                def exec_module(module, orig=orig):
                    orig(module)
                    patch(module)

                spec.loader.exec_module = exec_module
                return spec
        return None

    @staticmethod
    def _patch_cifar(module):
        for cls in (module.CIFAR10, module.CIFAR100):
            cls.train_list = [[n, None] for n, _ in cls.train_list]
            cls.test_list = [[n, None] for n, _ in cls.test_list]
            cls.meta = dict(cls.meta, md5=None)

    done = False

    def _patch_library(self):
        if self.done:
            return
        self.done = True
        import torch
        import torch.library as L

        orig = L.register_fake

        def register_fake(op, *a, **k):
            if isinstance(op, str) and op.startswith("torchvision::"):
                try:
                    torch._C._dispatch_find_schema_or_throw(op, "")
                except Exception:
                    return (lambda fn: fn) if not a else None
            return orig(op, *a, **k)

        L.register_fake = register_fake


sys.meta_path.insert(0, _Compat())
