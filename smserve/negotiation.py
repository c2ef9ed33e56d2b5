"""Accept negotiation per RFC 9110 with q-values (spec core §10)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .codecs import ALIASES


@dataclass(frozen=True)
class MediaRange:
    type: str
    subtype: str
    q: float
    position: int

    def specificity(self, media_type: str) -> int:
        """-1 when the range does not match, else 0 (*/*), 1 (type/*), 2 (exact)."""
        mtype, _, msub = media_type.partition("/")
        if self.type == "*":
            return 0
        if self.type != mtype:
            return -1
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == msub else -1


@lru_cache(maxsize=512)
def parse_accept(header: str) -> tuple[MediaRange, ...]:
    ranges = []
    for position, item in enumerate(header.split(",")):
        bare, *params = item.split(";")
        bare = ALIASES.get(bare.strip().lower(), bare.strip().lower())
        if not bare:
            continue
        if "/" not in bare:
            bare = "*/*" if bare == "*" else bare + "/*"
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        mtype, _, msub = bare.partition("/")
        ranges.append(MediaRange(mtype, msub, q, position))
    return tuple(ranges)


def effective_accept(header: str | None, default_accept: str) -> str:
    """The header, or the configured default when it is missing, empty, or only */* ranges with q > 0."""
    if not header or not header.strip():
        return default_accept
    ranges = parse_accept(header)
    if ranges and all(r.type == "*" and r.q > 0 for r in ranges):
        return default_accept
    return header


@lru_cache(maxsize=512)
def choose(accept: str, supported: tuple[str, ...]) -> str | None:
    """Best supported media type: highest q, then first-listed range, then the family's preference order."""
    ranges = parse_accept(accept)
    best: tuple | None = None
    for preference, media in enumerate(supported):
        matches = [(r.specificity(media), r) for r in ranges]
        matches = [(s, r) for s, r in matches if s >= 0]
        if not matches:
            continue
        top = max(s for s, _ in matches)
        rng = min((r for s, r in matches if s == top), key=lambda r: r.position)
        if rng.q <= 0:
            continue
        key = (-rng.q, rng.position, preference)
        if best is None or key < best[0]:
            best = (key, media)
    return best[1] if best else None


def first_concrete(accept: str) -> str | None:
    """Content type for a user's bare response body: the first concrete type in preference order."""
    ranges = sorted((r for r in parse_accept(accept) if r.q > 0), key=lambda r: (-r.q, r.position))
    for r in ranges:
        if r.type != "*" and r.subtype != "*":
            return f"{r.type}/{r.subtype}"
    return None
