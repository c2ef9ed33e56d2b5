#!/usr/bin/env python3
"""Fail an image build whose virtual environment is not what the family's lock file says (images.md §3).

Run inside the deps stage of docker/Dockerfile, right after pip: every `name==version` pin of the lock file (and of
the files it includes with `-r`) must be installed at exactly that version, the framework spec too, the framework
must import, and torch must be the CUDA build the matrix row expects (`none` for cpu rows). pip's resolver would
let a user-level constraint or a stray wheel change a version silently; this turns that into a build error that
names the package.

    python verify_venv.py --requirements mxnet/requirements.txt --framework mxnet --framework-spec mxnet==1.9.1
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("-r "):
            pins.update(read_pins(path.parent / line[3:].strip()))
        elif match := PIN.match(line):
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, required=True)
    parser.add_argument("--framework", required=True, help="import name of the framework (torch, mxnet)")
    parser.add_argument("--framework-spec", required=True, help="the pip spec the row installs (torch==2.13.0+cpu)")
    parser.add_argument("--expect-cuda", default="none", help="torch rows: CUDA version prefix, or none")
    args = parser.parse_args()

    pins = read_pins(args.requirements)
    name, _, version = args.framework_spec.partition("==")
    if version:
        pins[canonical(name)] = version
    wrong = []
    for package, wanted in sorted(pins.items()):
        try:
            have = metadata.version(package)
        except metadata.PackageNotFoundError:
            have = None
        if have != wanted:
            wrong.append(f"{package}: lock file {args.requirements} pins {wanted}, installed {have}")
    if wrong:
        print("verify_venv: the environment does not match its lock file:\n  " + "\n  ".join(wrong), file=sys.stderr)
        return 1

    framework = importlib.import_module(args.framework)
    summary = f"{args.framework} {getattr(framework, '__version__', '?')}"
    if args.framework == "torch":
        cuda = framework.version.cuda
        expected = cuda is None if args.expect_cuda == "none" else (cuda or "").startswith(args.expect_cuda)
        if not expected:
            print(f"verify_venv: torch is built for CUDA {cuda!r}, the matrix row expects {args.expect_cuda!r}",
                  file=sys.stderr)
            return 1
        summary += f", CUDA {cuda}"
    print(f"verify_venv: {len(pins)} pins installed as locked; {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
