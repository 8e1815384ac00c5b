"""Loads the native core. The oneDNN wheel installs libdnnl.so.3 into the environment's lib/ directory;
the extension finds it through its RPATH, and as a fallback (user installs, unusual layouts) it is
preloaded here from every plausible prefix before opendl._core is imported."""

from __future__ import annotations

import ctypes
import os
import sys
import sysconfig


def _candidate_dirs():
    seen = set()
    roots = [sys.prefix, sys.base_prefix, sysconfig.get_paths().get("data", "")]
    for p in sys.path:
        if p.endswith("site-packages"):
            roots.append(os.path.abspath(os.path.join(p, "..", "..", "..")))
    for r in roots:
        d = os.path.join(r, "lib")
        if r and d not in seen:
            seen.add(d)
            yield d


def preload_onednn() -> None:
    for d in _candidate_dirs():
        path = os.path.join(d, "libdnnl.so.3")
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return
            except OSError:
                continue
