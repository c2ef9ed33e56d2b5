"""Matrix rows whose build needs an operator input refuse to build without it, before touching the engine
(images.md §1; neo.md §7.4: no DLR with CUDA is obtainable from PyPI)."""

from __future__ import annotations

import subprocess
import sys

from ..families import REPO


def test_neo_gpu_row_is_defined_on_demand_and_needs_a_cuda_libdlr():
    listing = subprocess.run([sys.executable, str(REPO / "scripts" / "build_image.py"), "--list"],
                             capture_output=True, text=True, timeout=60)
    row = next(line for line in listing.stdout.splitlines() if line.split()[:2] == ["neo", "gpu"])
    assert "on-demand" in row, row
    refused = subprocess.run([sys.executable, str(REPO / "scripts" / "build_image.py"), "--family", "neo",
                              "--variant", "gpu"], capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin"})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "NEEDS A CUDA BUILD OF libdlr" in refused.stderr and "--neo-libdlr PATH" in refused.stderr
