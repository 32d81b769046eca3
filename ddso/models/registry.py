"""A model registry on any fsspec filesystem: versioned artifacts, metadata, lineage, a champion.

The root is a local folder, a ``file://`` URI or any fsspec URI (``s3://bucket/models``,
``gs://...``, ``memory://...``; the protocol's package, e.g. ``s3fs`` or ``gcsfs``, must be
installed). Layout under the root::

    <name>/<version>/.claim         created first and exclusively: the version number is taken
    <name>/<version>/<artifact>     the artifact files
    <name>/<version>/metadata.json  written last: a version exists once this file does
    <name>/CHAMPION                 one small JSON, replaced whole: the champion and the history
                                    of promotions and rollbacks, with the scores compared

Object stores have no rename, so nothing here relies on one: a crash while registering leaves
a folder without ``metadata.json`` that no reader lists (its number is skipped), and a crash
while promoting leaves the previous ``CHAMPION`` in place. Two writers racing for one number
are kept apart by the exclusive create (``open(..., "xb")``), which local and memory
filesystems and recent s3fs, gcsfs and adlfs releases honour.

Stages: every registered version starts as a *candidate*; :meth:`ModelRegistry.promote` makes
it the *champion* through a gate (a candidate worse than the champion on the same holdout is
refused, with the numbers); a champion that is replaced becomes *retired*;
:meth:`ModelRegistry.rollback` restores the previous champion.

Versions are ``v0001``, ``v0002``, ... in registration order. Metadata records the metrics,
feature list and feature-set version, a fingerprint of the training data, the code version,
the creation time and the sha256 of every artifact file, so a decision can name exactly what
scored it. :meth:`ModelVersion.artifact` gives a local file for loaders that need one: the file
itself in a local registry, else a copy downloaded once into a cache keyed by its sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

import ddso
from ddso.errors import ConfigError, DataFileError, UserError

_VERSION = re.compile(r"v\d{4,}")


class PromotionRefused(UserError):
    """The promotion gate refused a candidate; the message gives both scores."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version; ``uri`` is its folder in the registry."""

    name: str
    version: str
    uri: str
    metadata: dict[str, Any]
    registry: ModelRegistry = field(repr=False, compare=False)

    def artifact(self, filename: str) -> Path:
        """A local file holding the artifact ``filename`` (see the module docstring)."""
        return self.registry._local_copy(self, filename)

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


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ddso" / "registry"


class ModelRegistry:
    """Registry rooted at ``uri`` (a folder or an fsspec URI; see the module docstring).

    ``cache_dir`` holds the local copies of artifacts of a remote registry (default:
    ``$XDG_CACHE_HOME/ddso/registry``, else ``~/.cache/ddso/registry``).
    """

    def __init__(self, uri: str | Path, *, cache_dir: str | Path | None = None):
        self.uri = str(uri)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.uri)
        except ImportError as e:
            protocol = self.uri.split("://", 1)[0]
            raise ConfigError(
                f"registry_uri {self.uri!r}: the package for {protocol}:// is not installed "
                f"({e}); install it, or use a local folder"
            ) from e
        except ValueError as e:
            raise ConfigError(
                f"registry_uri {self.uri!r}: {e}; use a local folder or an fsspec URI such as "
                "s3://bucket/models"
            ) from e
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache()

    def _model_dir(self, name: str) -> str:
        if not name.replace("_", "").replace("-", "").isalnum():
            raise UserError(f"model name {name!r} must be letters, digits, '_' or '-'")
        return f"{self.root}/{name}"

    def _numbered(self, name: str) -> tuple[list[str], int]:
        """The complete versions of ``name`` and the highest number taken, complete or not."""
        model_dir = self._model_dir(name)
        complete, highest = [], 0
        for path in self.fs.find(model_dir):
            parts = path[len(model_dir) :].strip("/").split("/")
            if len(parts) == 2 and _VERSION.fullmatch(parts[0]):
                highest = max(highest, int(parts[0][1:]))
                if parts[1] == "metadata.json":
                    complete.append(parts[0])
        return sorted(complete), highest

    def versions(self, name: str) -> list[str]:
        """The complete versions of ``name``, oldest first."""
        return self._numbered(name)[0]

    def register(
        self, name: str, files: dict[str, Path], metadata: dict[str, Any], *,
        promote: bool | None = None,
    ) -> ModelVersion:
        """Copy ``files`` (artifact name -> local source path) into a new version and return it.

        ``promote=None``: the first version of a model (or any version while there is no
        champion) is promoted; ``True``: promoted; ``False``: a candidate whatever the state
        (for a challenger that must pass a gate against a rule that is not in the registry).
        """
        digests = {artifact: _sha256(Path(src)) for artifact, src in files.items()}
        version = self._claim(name)
        folder = f"{self._model_dir(name)}/{version}"
        try:
            for artifact, src in files.items():
                self.fs.put_file(str(src), f"{folder}/{artifact}")
            meta = {
                **metadata,
                "name": name,
                "version": version,
                "created_at": datetime.now(UTC).isoformat(),
                "code_version": ddso.__version__,
                "artifacts": digests,
            }
            self._write(f"{folder}/metadata.json", json.dumps(meta, indent=2, default=str))
        except BaseException:
            self.fs.rm(folder, recursive=True)
            raise
        mv = ModelVersion(name, version, self._uri(folder), meta, self)
        if promote or (promote is None and self._state(name)["champion"] is None):
            self.promote(name, version)
        return mv

    def _claim(self, name: str) -> str:
        """Take the next free version number with an exclusive create of its ``.claim``."""
        number = self._numbered(name)[1] + 1
        while True:
            version = f"v{number:04d}"
            folder = f"{self._model_dir(name)}/{version}"
            self.fs.makedirs(folder, exist_ok=True)
            try:
                with self.fs.open(f"{folder}/.claim", "xb") as f:
                    f.write(json.dumps({"claimed_at": datetime.now(UTC).isoformat()}).encode())
                return version
            except FileExistsError:
                number += 1

    def get(self, name: str, version: str) -> ModelVersion:
        folder = f"{self._model_dir(name)}/{version}"
        try:
            if not _VERSION.fullmatch(version):
                raise FileNotFoundError(version)
            meta = json.loads(self.fs.cat_file(f"{folder}/metadata.json"))
        except FileNotFoundError:
            known = ", ".join(self.versions(name)) or "none"
            raise UserError(
                f"model {name!r} has no version {version!r} in {self.uri} (known: {known})"
            ) from None
        return ModelVersion(name, version, self._uri(folder), meta, self)

    def promote(
        self,
        name: str,
        version: str,
        *,
        metric: str | None = None,
        higher_is_better: bool = True,
        champion_score: float | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Make ``version`` the champion, through the gate when ``metric`` is given.

        ``evidence`` (JSON values) is kept in the history entry: what the caller's own gate
        saw, e.g. the experiment that a policy won.

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
            **({"evidence": dict(evidence)} if evidence else {}),
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
        self._record(name, version, entry)
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
        self._record(
            name, target, {"action": "rollback", "version": target, "previous": current.version}
        )
        return self.get(name, target)

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every promotion and rollback of ``name``, oldest first."""
        return self._state(name)["history"]

    def stage(self, name: str, version: str) -> str:
        """``champion``, ``retired`` (was champion once) or ``candidate``."""
        self.get(name, version)
        state = self._state(name)
        if state["champion"] == version:
            return "champion"
        if any(e["version"] == version for e in state["history"]):
            return "retired"
        return "candidate"

    def champion(self, name: str) -> ModelVersion:
        """The promoted version of ``name``; a clear error if there is none yet."""
        current = self._champion_or_none(name)
        if current is None:
            raise UserError(
                f"no champion for model {name!r} in registry {self.uri}; train one first "
                f"(e.g. `ddso up` or `python -m pipelines.train_propensity`)"
            )
        return current

    def _champion_or_none(self, name: str) -> ModelVersion | None:
        version = self._state(name)["champion"]
        return None if version is None else self.get(name, version)

    def _state(self, name: str) -> dict[str, Any]:
        """``{"champion": version or None, "history": [...]}`` from ``<name>/CHAMPION``.

        A ``CHAMPION`` that is not JSON is the earlier layout (the bare version, the history
        as JSON lines in ``HISTORY``); the next promotion rewrites it as JSON.
        """
        model_dir = self._model_dir(name)
        try:
            text = self.fs.cat_file(f"{model_dir}/CHAMPION").decode()
        except FileNotFoundError:
            return {"champion": None, "history": []}
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            try:
                lines = self.fs.cat_file(f"{model_dir}/HISTORY").decode().splitlines()
            except FileNotFoundError:
                lines = []
            return {"champion": text.strip(), "history": [json.loads(x) for x in lines if x]}

    def _record(self, name: str, champion: str, entry: dict[str, Any]) -> None:
        state = self._state(name)
        state = {
            "champion": champion,
            "history": [*state["history"], {**entry, "at": datetime.now(UTC).isoformat()}],
        }
        model_dir = self._model_dir(name)
        self._write(f"{model_dir}/CHAMPION", json.dumps(state, indent=1) + "\n")
        if self.fs.exists(f"{model_dir}/HISTORY"):
            self.fs.rm_file(f"{model_dir}/HISTORY")

    def _write(self, path: str, text: str) -> None:
        """Replace ``path`` whole: one PUT on object stores, a rename on local disks."""
        if not self.local:
            self.fs.pipe_file(path, text.encode())
            return
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    def _uri(self, path: str) -> str:
        return path if self.local else self.fs.unstrip_protocol(path)

    def _local_copy(self, version: ModelVersion, filename: str) -> Path:
        digest = version.metadata["artifacts"].get(filename)
        if digest is None:
            raise UserError(
                f"model {version.name} {version.version} has no artifact {filename!r} "
                f"(artifacts: {', '.join(sorted(version.metadata['artifacts']))})"
            )
        source = f"{self._model_dir(version.name)}/{version.version}/{filename}"
        if self.local:
            return Path(source)
        # Keyed by content, so a cached copy is never stale, whatever registry it came from.
        target = self.cache_dir / digest / filename
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".download-", dir=target.parent)
        os.close(fd)
        try:
            self.fs.get_file(source, tmp)
            if _sha256(Path(tmp)) != digest:
                raise DataFileError(
                    f"{self._uri(source)}: sha256 differs from the one registered in its "
                    "metadata; the artifact was changed after registration, register it again"
                )
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return target
