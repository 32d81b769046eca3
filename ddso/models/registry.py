"""A folder-backed model registry: versioned artifacts, metadata, lineage and a champion.

Layout under the registry root::

    <name>/<version>/   artifact files + metadata.json (staged in a temp folder, then renamed)
    <name>/CHAMPION     the version that serving loads (replaced atomically)
    <name>/HISTORY      one JSON line per promotion or rollback, with the scores compared

Stages: every registered version starts as a *candidate*; :meth:`ModelRegistry.promote` makes
it the *champion* through a gate (a candidate worse than the champion on the same holdout is
refused, with the numbers); a champion that is replaced becomes *retired*;
:meth:`ModelRegistry.rollback` restores the previous champion.

Versions are ``v0001``, ``v0002``, ... in registration order. Metadata records the metrics,
feature list and feature-set version, a fingerprint of the training data, the code version,
the creation time and the sha256 of every artifact file, so a decision can name exactly what
scored it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ddso
from ddso.errors import ConfigError, UserError


class PromotionRefused(UserError):
    """The promotion gate refused a candidate; the message gives both scores."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    metadata: dict[str, Any]

    def artifact(self, filename: str) -> Path:
        return self.path / filename

    @property
    def artifact_sha256(self) -> str:
        """One hash over all artifact files (sorted by name): the model's identity."""
        digests = self.metadata["artifacts"]
        joined = "".join(f"{k}:{digests[k]}" for k in sorted(digests))
        return hashlib.sha256(joined.encode()).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ModelRegistry:
    """Registry rooted at a local folder (``file://`` URIs accepted)."""

    def __init__(self, uri: str | Path):
        text = str(uri)
        if text.startswith("file://"):
            text = text[len("file://") :]
        elif "://" in text:
            raise ConfigError(
                f"registry_uri {uri!r}: only local folders and file:// URIs are supported; "
                "mount the object store or use a shared volume"
            )
        self.root = Path(text)

    def _model_dir(self, name: str) -> Path:
        if not name.replace("_", "").replace("-", "").isalnum():
            raise UserError(f"model name {name!r} must be letters, digits, '_' or '-'")
        return self.root / name

    def versions(self, name: str) -> list[str]:
        d = self._model_dir(name)
        if not d.exists():
            return []
        return sorted(p.name for p in d.iterdir() if p.is_dir() and p.name.startswith("v"))

    def register(
        self, name: str, files: dict[str, Path], metadata: dict[str, Any], *, promote: bool = False
    ) -> ModelVersion:
        """Copy ``files`` (artifact name -> source path) into a new version and return it."""
        model_dir = self._model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
        digests = {}
        for artifact, src in files.items():
            shutil.copyfile(src, staging / artifact)
            digests[artifact] = _sha256(staging / artifact)
        existing = self.versions(name)
        while True:
            version = f"v{(int(existing[-1][1:]) + 1 if existing else 1):04d}"
            meta = {
                **metadata,
                "name": name,
                "version": version,
                "created_at": datetime.now(UTC).isoformat(),
                "code_version": ddso.__version__,
                "artifacts": digests,
            }
            (staging / "metadata.json").write_text(json.dumps(meta, indent=2, default=str))
            final = model_dir / version
            try:
                # rename is atomic: readers see either no version or a complete one, and of
                # two writers racing for one number the second gets the next.
                os.rename(staging, final)
                break
            except OSError:
                existing = self.versions(name)
        mv = ModelVersion(name, version, final, meta)
        if promote or not existing:
            self.promote(name, version)
        return mv

    def get(self, name: str, version: str) -> ModelVersion:
        path = self._model_dir(name) / version
        meta_path = path / "metadata.json"
        if not meta_path.exists():
            known = ", ".join(self.versions(name)) or "none"
            raise UserError(
                f"model {name!r} has no version {version!r} in {self.root} (known: {known})"
            )
        return ModelVersion(name, version, path, json.loads(meta_path.read_text()))

    def promote(
        self,
        name: str,
        version: str,
        *,
        metric: str | None = None,
        higher_is_better: bool = True,
        champion_score: float | None = None,
    ) -> ModelVersion:
        """Make ``version`` the champion, through the gate when ``metric`` is given.

        The gate compares the candidate's ``metrics[metric]`` with the champion's on the same
        holdout: the champion's recorded score if both carry the same ``holdout`` fingerprint
        in their metadata, else ``champion_score`` (the caller scored the champion on the
        candidate's holdout). A worse candidate raises :class:`PromotionRefused`.
        """
        candidate = self.get(name, version)
        current = self._champion_or_none(name)
        entry: dict[str, Any] = {
            "action": "promote",
            "version": version,
            "previous": current.version if current else None,
        }
        if metric is not None and current is not None and current.version != version:
            cand = float(candidate.metadata["metrics"][metric])
            if champion_score is None:
                if candidate.metadata.get("holdout") != current.metadata.get("holdout"):
                    raise PromotionRefused(
                        f"cannot compare {name} {version} with champion {current.version} on "
                        f"{metric!r}: they were scored on different holdouts; pass champion_score "
                        "measured on the candidate's holdout"
                    )
                champion_score = float(current.metadata["metrics"][metric])
            worse = cand < champion_score if higher_is_better else cand > champion_score
            if worse:
                raise PromotionRefused(
                    f"refused: candidate {name} {version} has {metric}={cand:.4f}, worse than "
                    f"champion {current.version} with {metric}={champion_score:.4f} on the same "
                    "holdout; the champion stays"
                )
            entry.update(metric=metric, candidate_score=cand, champion_score=champion_score)
        self._point(name, version)
        self._log(name, entry)
        return candidate

    def rollback(self, name: str) -> ModelVersion:
        """Restore the champion before the current one (as recorded in the history)."""
        current = self.champion(name)
        promotions = [
            e
            for e in self.history(name)
            if e["version"] == current.version and e["action"] == "promote"
        ]
        target = promotions[-1]["previous"] if promotions else None
        if target is None:
            raise UserError(f"model {name!r}: champion {current.version} has no predecessor")
        self._point(name, target)
        self._log(name, {"action": "rollback", "version": target, "previous": current.version})
        return self.get(name, target)

    def history(self, name: str) -> list[dict[str, Any]]:
        path = self._model_dir(name) / "HISTORY"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def stage(self, name: str, version: str) -> str:
        """``champion``, ``retired`` (was champion once) or ``candidate``."""
        self.get(name, version)
        current = self._champion_or_none(name)
        if current is not None and current.version == version:
            return "champion"
        if any(e["version"] == version for e in self.history(name)):
            return "retired"
        return "candidate"

    def _point(self, name: str, version: str) -> None:
        pointer = self._model_dir(name) / "CHAMPION"
        tmp = pointer.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(version + "\n")
        os.replace(tmp, pointer)

    def _log(self, name: str, entry: dict[str, Any]) -> None:
        entry = {**entry, "at": datetime.now(UTC).isoformat()}
        with (self._model_dir(name) / "HISTORY").open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def _champion_or_none(self, name: str) -> ModelVersion | None:
        pointer = self._model_dir(name) / "CHAMPION"
        return self.get(name, pointer.read_text().strip()) if pointer.exists() else None

    def champion(self, name: str) -> ModelVersion:
        """The promoted version of ``name``; a clear error if there is none yet."""
        pointer = self._model_dir(name) / "CHAMPION"
        if not pointer.exists():
            raise UserError(
                f"no champion for model {name!r} in registry {self.root}; train one first "
                f"(e.g. `ddso up` or `python -m pipelines.train_propensity`)"
            )
        return self.get(name, pointer.read_text().strip())
