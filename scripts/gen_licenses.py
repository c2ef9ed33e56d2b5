#!/usr/bin/env python3
"""Write license notices for an image from installed package metadata (images.md §3).

Run with the image's venv interpreter at build time:
    python gen_licenses.py --out /opt/smserve-licenses [--project-license FILE]

Output:
    LICENSE                      the project license (FILE, else Debian's common Apache-2.0 text)
    THIRD_PARTY_NOTICES.txt      one entry per installed distribution: name, version, license, home page
    third-party/<dist>/...       license/notice files shipped in each distribution's metadata
Debian package copyrights stay in /usr/share/doc/*/copyright (kept by the base bootstrap).
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import shutil
import sys
from pathlib import Path

LICENSE_RE = re.compile(r"(^|/)(LICEN[CS]E|COPYING|NOTICE|AUTHORS|COPYRIGHT)[^/]*$", re.I)


def license_of(meta) -> str:
    expr = meta.get("License-Expression")
    if expr:
        return expr.strip()
    lic = (meta.get("License") or "").strip()
    if lic and len(lic) < 120 and "\n" not in lic:
        return lic
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return "; ".join(classifiers)
    return "see license files" if lic else "UNKNOWN"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--project-license", type=Path, default=None)
    ap.add_argument("--project-dir", type=Path, default=None, help="directory that may hold LICENSE")
    args = ap.parse_args()

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    candidates = [args.project_license] if args.project_license else []
    if args.project_dir:
        candidates += [args.project_dir / n for n in ("LICENSE", "LICENSE.txt", "LICENSE.md")]
    candidates.append(Path("/usr/share/common-licenses/Apache-2.0"))
    for c in candidates:
        if c and c.is_file():
            shutil.copyfile(c, out / "LICENSE")
            break

    dists = {}
    for d in md.distributions():
        name = d.metadata.get("Name")
        if name:
            dists[name.lower()] = d
    lines = [
        "smserve image: third-party Python packages",
        "Generated at build time from installed package metadata (scripts/gen_licenses.py).",
        "",
    ]
    n_files = 0
    for key in sorted(dists):
        d = dists[key]
        meta = d.metadata
        home = meta.get("Home-page") or ""
        if not home:
            for url in meta.get_all("Project-URL") or []:
                home = url.split(",", 1)[-1].strip()
                break
        lines.append(f"{meta['Name']} {d.version}")
        lines.append(f"  License: {license_of(meta)}")
        if home:
            lines.append(f"  Home: {home}")
        copied = []
        for f in d.files or []:
            fs = str(f)
            if ".dist-info/" in fs and (LICENSE_RE.search(fs) or "/licenses/" in fs):
                src = Path(d.locate_file(f))
                if src.is_file():
                    rel = fs.split(".dist-info/", 1)[1]
                    dst = out / "third-party" / meta["Name"] / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dst)
                    copied.append(rel)
        if copied:
            lines.append("  Files: " + ", ".join(f"third-party/{meta['Name']}/{c}" for c in copied))
            n_files += len(copied)
        lines.append("")
    (out / "THIRD_PARTY_NOTICES.txt").write_text("\n".join(lines))
    print(f"gen_licenses: {len(dists)} distributions, {n_files} license files -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
