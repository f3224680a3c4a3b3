"""The input store port: where members' images are kept while quotes and jobs need them.

A quote's image is saved once, when the member sends it, and is named from
then on by a *reference*: the string the quote and its jobs keep in their
``image_path`` column. Whoever runs the job (with several replicas, any of
them) asks for a local file with the image's bytes before it hands the job
to a provider (:meth:`InputStore.materialize`), and lets that copy go when
the job no longer needs the provider (:meth:`InputStore.release`). The
retention sweep removes an image nothing needs any more
(:meth:`InputStore.remove`).

Two implementations:

- :class:`FileInputStore` (SQLite, one process): the image is a file in
  ``<KLINGBOT_DATA_DIR>/inputs``, and its reference is that file's path, as
  it always was, so existing databases keep working. Materializing is the
  path itself; nothing is copied.
- ``storage.postgres.inputs.PgInputStore`` (PostgreSQL, several replicas):
  the bytes are a row of the ``inputs`` table, referenced as
  ``pg:<quote id><extension>``; a replica materializes a job's image into its
  own data folder (``input-cache/``) and removes it when the job is done.
"""

from __future__ import annotations

import asyncio
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class InputGone(Exception):
    """The image a reference names is no longer kept (removed, or never saved here)."""

    def __init__(self, reference: str) -> None:
        super().__init__(f"input image {reference} is no longer kept")
        self.reference = reference


@dataclass(frozen=True, slots=True)
class InputUsage:
    """What the store holds now: images and their bytes."""

    files: int
    bytes: int


class InputStore(ABC):
    """Members' images by reference; see the module docstring."""

    @abstractmethod
    async def save(self, quote_id: str, extension: str, data: bytes) -> str:
        """Keep ``data`` as the image of quote ``quote_id``; return its reference.

        ``extension`` (``.jpg``, ``.png``) is part of the name a provider sees.
        Saving the same quote again replaces the bytes.
        """

    @abstractmethod
    async def exists(self, reference: str) -> bool:
        """Whether the image is still kept."""

    @abstractmethod
    async def materialize(self, reference: str, key: str) -> Path:
        """A file on this machine holding the image, for a provider to read; InputGone if none.

        ``key`` (a job id) names the copy, so two jobs of one image (a
        reroll) have their own, and :meth:`release` of one leaves the other's.
        """

    @abstractmethod
    def release(self, key: str) -> None:
        """Let the copy :meth:`materialize` made for ``key`` go (nothing if it made none).

        One unlink at most: called where no await is possible.
        """

    @abstractmethod
    async def remove(self, reference: str) -> None:
        """Delete the image; one already gone is fine.

        Only for an image no unfinished job names (the retention sweep and a
        retired quote make sure of that), so no provider is still reading it.
        """

    @abstractmethod
    async def usage(self) -> InputUsage:
        """The images kept now and their bytes (for the metrics)."""

    async def remove_unnamed(self) -> int:
        """Delete the images no quote or job names, saved over an hour ago; how many.

        A process stopped between saving an image and saving its quote (or
        a quote that could not be saved, and whose image could not be
        removed either) leaves an image nothing names, which the sweep,
        asking only for named images, would never find. A store that can
        tell such images apart removes them here (the retention sweep calls
        it); the default (files) removes nothing, as before.
        """
        return 0


class FileInputStore(InputStore):
    """Images as files in one folder, each named by its file's path (SQLite, one process)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    async def save(self, quote_id: str, extension: str, data: bytes) -> str:
        """Write ``<folder>/<quote id><extension>``; the reference is that path."""
        path = self.folder / f"{quote_id}{extension}"
        await asyncio.to_thread(_write, path, data)
        return str(path)

    async def exists(self, reference: str) -> bool:
        """Whether the file is there."""
        return await asyncio.to_thread(Path(reference).exists)

    async def materialize(self, reference: str, key: str) -> Path:
        """The file itself (no copy); InputGone when it is not there.

        One ``stat``, without a thread: jobs started together reach their
        provider in the order they started.
        """
        path = Path(reference)
        if not path.exists():
            raise InputGone(reference)
        return path

    def release(self, key: str) -> None:
        """Nothing: :meth:`materialize` made no copy."""

    async def remove(self, reference: str) -> None:
        """Delete the file if it lies inside the folder; a path outside is logged and kept."""
        await asyncio.to_thread(unlink_inside, Path(reference), self.folder)

    async def usage(self) -> InputUsage:
        """The files in the folder and their bytes."""
        return await asyncio.to_thread(folder_usage, self.folder)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def unlink_inside(path: Path, folder: Path) -> None:
    """Delete ``path`` if it lies inside ``folder``; a file already gone is fine."""
    if not path.resolve().is_relative_to(folder.resolve()):
        log.warning("retention: %s is outside %s; left in place, noted as gone", path, folder)
        return
    path.unlink(missing_ok=True)


def folder_usage(folder: Path) -> InputUsage:
    """The files directly in ``folder`` and their bytes (one ``scandir``; none if it is missing).

    What the disk holds, not what the database believes: a file left behind
    by a crash counts too.
    """
    files = size = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        files += 1
                        size += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue  # removed while counting
    except OSError:
        pass  # no folder yet: nothing stored
    return InputUsage(files, size)


class InputCache:
    """A replica's local copies of stored images, one file per job in one folder.

    For stores whose images are not files on this machine
    (``storage.postgres.inputs.PgInputStore``). The folder belongs to this
    replica alone (its own data folder), so what an earlier process left
    there is removed at the first copy: those jobs make their copy again.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._copies: dict[str, Path] = {}
        """Key (job id) -> its copy, made by this process."""
        self._cleared: asyncio.Future[None] | None = None

    async def put(self, key: str, name: str, data: bytes) -> Path:
        """Write ``data`` as the copy for ``key`` (named ``<key>-<name>``) and return its path."""
        if self._cleared is None:
            self._cleared = asyncio.ensure_future(asyncio.to_thread(self._clear))
        await self._cleared
        path = self.folder / f"{key}-{name}"
        await asyncio.to_thread(_write_atomically, path, data)
        self._copies[key] = path
        return path

    def release(self, key: str) -> None:
        """Delete the copy of ``key``, if this process made one."""
        path = self._copies.pop(key, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def held(self) -> set[str]:
        """Keys with a copy now (for tests and logs)."""
        return set(self._copies)

    def _clear(self) -> None:
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary name, then rename: a reader never sees half an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)
