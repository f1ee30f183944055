"""The artifact store: model files kept beside the registry, named by their content.

An object lives at ``<registry folder>/artifacts/<sha[:2]>/<sha256>.<ext>``. Because the name
is the content, a model produced again (the same recipe on the same inputs, or the float model
of every compare run) is stored once, and an object that exists is known to be complete: it
is written under a temporary name, flushed to disk and renamed into place, so a process
killed mid-copy leaves at most a temporary file, never a truncated object.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from edgequant.provenance import content_sha256
from edgequant.registry.records import ArtifactRecord

__all__ = ["ArtifactStore"]

_CHUNK = 1 << 20


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def find(self, sha256: str) -> Path | None:
        """The stored object with this content, whatever its suffix, or None."""
        folder = self.root / sha256[:2]
        if not folder.is_dir():
            return None
        # Objects are <sha>.<ext> or <sha>; temporary files start with a dot and are never matched.
        return next((p for p in sorted(folder.iterdir()) if p.name == sha256 or p.name.startswith(sha256 + ".")),
                    None)

    def put(self, path: Path) -> ArtifactRecord | None:
        """Store the file at ``path`` unless its content is stored already; None for a folder or a
        missing file (a SavedModel output, a variant that failed before writing)."""
        path = Path(path)
        if not path.is_file():
            return None
        sha = content_sha256(path)
        found = self.find(sha)
        if found is not None:
            return ArtifactRecord(sha, found.stat().st_size, str(found))
        return self._copy(path)

    def _copy(self, path: Path) -> ArtifactRecord:
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=tmp_dir)
        try:
            # Hash what is copied, not what was hashed before: if the file changed in between,
            # the object is still named by the bytes it holds.
            h = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = h.hexdigest()
            suffix = "".join(path.suffixes[-1:])
            final = self.root / sha[:2] / f"{sha}{suffix}"
            existing = self.find(sha)
            if existing is not None:  # another process stored the same bytes meanwhile
                os.unlink(tmp)
                return ArtifactRecord(sha, existing.stat().st_size, str(existing))
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)  # objects are shared by runs: nobody should edit one in place
            os.replace(tmp, final)
            return ArtifactRecord(sha, size, str(final))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
