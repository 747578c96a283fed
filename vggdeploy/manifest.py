"""One artifact's record in its folder's manifest.json, typed.

Every stage that publishes an artifact states a ManifestEntry; the store (store.py) adds the files'
sha256 and sizes, the time and the command, and writes it under the folder's lock; every verb reads
entries back as ManifestEntry. The JSON is what it was before the type existed: the common fields at
the top level, beside the stage's own facts (`details`), so manifests written by earlier releases read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace


@dataclass(frozen=True)
class ManifestEntry:
    """What an artifact is (`kind`, `form`, `precision`), what it was made from (`variant`, and
    `source`: the artifact it was derived from, in the same folder), its files ({name: {sha256,
    bytes}}, `bytes` in all), when and by which command (`created`, `command`), and the stage's own
    facts in `details` (opset, weights, calibration, layer errors, parity, profiles, ...).
    `entry["key"]` and `entry.get("key")` read a field or a detail alike."""

    kind: str
    form: str | None = None
    precision: str | None = None
    variant: str | None = None
    source: str | None = None
    files: Mapping[str, Mapping] = field(default_factory=dict)
    bytes: int | None = None
    created: str | None = None
    command: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def from_json(cls, record: Mapping) -> "ManifestEntry":
        """From a manifest's table (already checked by store.read_manifest)."""
        top = {k: v for k, v in record.items() if k in _FIELDS}
        return cls(**{**top, "kind": str(top.get("kind") or "unknown")},  # a hand-edited entry may lack it
                   details={k: v for k, v in record.items() if k not in _FIELDS})

    def to_json(self) -> dict:
        """The manifest's table: the fields that are set, then the details."""
        top = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"}
        return {**{k: v for k, v in top.items() if v not in (None, {})}, **self.details}

    def with_details(self, **details) -> "ManifestEntry":
        """A copy with `details` added (or replaced)."""
        return replace(self, details={**self.details, **details})

    def get(self, key: str, default=None):
        value = getattr(self, key) if key in _FIELDS else self.details.get(key, default)
        return default if value is None else value

    def __getitem__(self, key: str):
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None


_FIELDS = {f.name for f in fields(ManifestEntry)} - {"details"}

__all__ = ["ManifestEntry"]
