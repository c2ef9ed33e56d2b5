"""Write the benchmark's small TorchScript MLP (4 -> 64 -> 64 -> 2, seeded) to DIR/model.pt.

Usage: python bench/make_mlp.py DIR   (any venv with torch==2.13.0)
Prints the expected output for the benchmark input as JSON, for the response check.
"""
import json
import os
import sys

import torch

BENCH_INPUT = [[0.5, -1.25, 2.0, 3.5]]


def main(out_dir):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 2),
    ).eval()
    scripted = torch.jit.script(model)
    os.makedirs(out_dir, exist_ok=True)
    scripted.save(os.path.join(out_dir, "model.pt"))
    with torch.no_grad():
        expected = scripted(torch.tensor(BENCH_INPUT, dtype=torch.float32)).tolist()
    print(json.dumps({"input": BENCH_INPUT, "expected": expected}))


if __name__ == "__main__":
    main(sys.argv[1])
