"""Write the models and bodies of bench/run_speed.py into DIR; print their paths (and the MLP's expected answer)
as JSON on the last line.

Usage: python bench/make_speed_models.py DIR   (any venv with torch==2.13.0)
  mlp_big/model.pt  TorchScript MLP 512 -> 2048 -> 2048 -> 10, seeded: about 1.5 ms per one-row call here, so
                    batching has something to save (a model cheaper than the HTTP layer gains nothing)
  echo/model.pt     TorchScript identity (the output is the input tensor): the payload cells measure the server
  npy_1mb.npy, npy_6mb.npy   float32 arrays of 1,048,576 and 6,000,000 bytes (+128-byte header; the peer's MMS
                    refuses bodies over 6,553,500 bytes, as does smserve by default)
  json_1mb.json     a JSON array of about 1 MB of floats
"""
import json
import os
import sys

import numpy as np
import torch


class Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def main(out_dir):
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 2048),
                              torch.nn.ReLU(), torch.nn.Linear(2048, 10)).eval()
    paths = {"mlp_big": os.path.join(out_dir, "mlp_big"), "echo": os.path.join(out_dir, "echo")}
    for name, module in (("mlp_big", mlp), ("echo", Identity())):
        os.makedirs(paths[name], exist_ok=True)
        torch.jit.script(module).save(os.path.join(paths[name], "model.pt"))
    row = np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32)
    with torch.no_grad():
        expected = mlp(torch.from_numpy(row)).tolist()
    rng = np.random.default_rng(1)
    for name, shape in (("npy_1mb", (256, 1024)), ("npy_6mb", (1500, 1000))):
        paths[name] = os.path.join(out_dir, name + ".npy")
        np.save(paths[name], rng.standard_normal(shape).astype(np.float32))
    paths["json_1mb"] = os.path.join(out_dir, "json_1mb.json")
    with open(paths["json_1mb"], "w") as f:
        json.dump(np.round(rng.standard_normal((512, 192)), 6).tolist(), f)
    paths.update(mlp_big_body=json.dumps(row.tolist()), mlp_big_expected=expected)
    print(json.dumps(paths))


if __name__ == "__main__":
    main(sys.argv[1])
