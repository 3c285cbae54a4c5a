"""The two storage backends SYNTHGEN_STORAGE_URL chooses between (settings.storage_from_url).

Both overwrite a name that exists (as S3 does), list a whole prefix (``walk``), remove one
(``remove_prefix``), say what they are (``describe``), and turn the errors of a storage that cannot
be reached, or refuses, into :class:`StorageUnavailable`; a name that is not there stays
``FileNotFoundError``. Code outside apps/core/storage.py reaches them through ``default_storage`` or
that module.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path

from django.core.files.base import File
from django.core.files.storage import FileSystemStorage
from storages.backends.s3 import S3Storage as _BaseS3Storage
from storages.utils import clean_name

_CLIENT_LOCK = threading.Lock()


class StorageUnavailable(Exception):
    """The storage cannot be reached or refuses the request (down, bucket missing, no permission, disk full)."""


def _missing(exc: Exception) -> bool:
    """An S3 error that only means: no such object."""
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Code")) in {"404", "NoSuchKey", "NotFound"}


def _guarded(method):
    """Call the backend method; storage errors become StorageUnavailable naming the storage."""

    @wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (StorageUnavailable, FileNotFoundError, IsADirectoryError, NotADirectoryError, ValueError):
            raise
        except Exception as exc:
            if self._is_storage_error(exc):
                if _missing(exc):
                    raise FileNotFoundError(f"{args[0] if args else ''} is not in {self.describe()}") from exc
                raise StorageUnavailable(
                    f"The file storage ({self.describe()}) cannot be used: {_reason(exc)}"
                ) from exc
            raise

    return call


def _reason(exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    if error:
        return f"{error.get('Code')}: {error.get('Message') or 'no message'}"
    return str(exc) or type(exc).__name__


class LocalStorage(FileSystemStorage):
    """A folder on this machine (MEDIA_ROOT): files are written atomically (temp file, fsync, rename)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_overwrite", True)
        super().__init__(*args, **kwargs)

    def describe(self) -> str:
        return f"the folder {self.location}"

    @staticmethod
    def _is_storage_error(exc: Exception) -> bool:
        return isinstance(exc, OSError)

    @_guarded
    def _save(self, name, content):
        full_path = Path(self.path(name))
        full_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=full_path.parent, prefix=f".{full_path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                if hasattr(content, "seek"):
                    content.seek(0)
                for chunk in content.chunks():
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if self.file_permissions_mode is not None:
                os.chmod(tmp, self.file_permissions_mode)
            os.replace(tmp, full_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return str(name).replace("\\", "/")

    _open = _guarded(FileSystemStorage._open)
    delete = _guarded(FileSystemStorage.delete)
    exists = _guarded(FileSystemStorage.exists)
    size = _guarded(FileSystemStorage.size)

    @_guarded
    def listdir(self, path):
        return super().listdir(path)

    @_guarded
    def walk(self, prefix: str) -> Iterator[str]:
        """Every file name under ``prefix`` (relative to the storage), sorted."""
        root = Path(self.path(prefix))
        if not root.is_dir():
            return iter(())
        base = Path(self.location)
        names = [
            str(p.relative_to(base)).replace(os.sep, "/")
            for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        ]
        return iter(sorted(names))

    @_guarded
    def walk_objects(self, prefix: str) -> list[tuple[str, int, datetime]]:
        """(name, size in bytes, last written, UTC) of every file under ``prefix``, sorted by name."""
        objects = []
        for name in self.walk(prefix):
            stat = Path(self.path(name)).stat()
            objects.append((name, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC)))
        return objects

    @_guarded
    def remove_prefix(self, prefix: str) -> None:
        root = Path(self.path(prefix))
        if root.is_dir():
            shutil.rmtree(root)
        elif root.exists():
            root.unlink()

    @_guarded
    def check(self) -> None:
        """Raise StorageUnavailable unless the folder can be written."""
        Path(self.location).mkdir(parents=True, exist_ok=True)
        if not os.access(self.location, os.W_OK):
            raise PermissionError(errno.EACCES, "not writable", str(self.location))


class S3Storage(_BaseS3Storage):
    """An S3 bucket (AWS, SeaweedFS, MinIO, ...): django-storages' backend with short timeouts, path-style
    addressing for non-AWS endpoints, and errors that name the bucket."""

    def get_default_settings(self):
        from botocore.config import Config

        defaults = super().get_default_settings()
        defaults.update(
            file_overwrite=True,
            default_acl=None,
            querystring_auth=False,
            signature_version="s3v4",
            addressing_style="path",
            client_config=Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                max_pool_connections=32,
            ),
        )
        return defaults

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        prefix = f" under {self.location}/" if self.location else ""
        return f"S3 bucket '{self.bucket_name}'{where}{prefix}"

    @staticmethod
    def _is_storage_error(exc: Exception) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        return isinstance(exc, (BotoCoreError, ClientError, OSError))

    @_guarded
    def _open(self, name, mode="rb"):
        if "w" in mode or "a" in mode:
            return super()._open(name, mode)
        # A GET (not django-storages' HEAD first): its error tells a missing object from a missing bucket.
        body, _ = self._get(name)
        buffer = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
        for chunk in body.iter_chunks(1024 * 1024):
            buffer.write(chunk)
        buffer.seek(0)
        return File(buffer, name=name)

    def _get(self, name: str):
        answer = self._client().get_object(Bucket=self.bucket_name, Key=self._key(name))
        return answer["Body"], answer["ContentLength"]

    def _client(self):
        """One boto3 client for every thread (clients are thread-safe; django-storages makes a session and a
        resource per thread, which costs a tenth of a second each time a new thread asks)."""
        client = getattr(self, "_shared_client", None)
        if client is None:
            with _CLIENT_LOCK:
                client = getattr(self, "_shared_client", None)
                if client is None:
                    client = self._shared_client = self.connection.meta.client
        return client

    _save = _guarded(_BaseS3Storage._save)
    delete = _guarded(_BaseS3Storage.delete)
    exists = _guarded(_BaseS3Storage.exists)
    size = _guarded(_BaseS3Storage.size)
    listdir = _guarded(_BaseS3Storage.listdir)

    def _key(self, name: str) -> str:
        return self._normalize_name(clean_name(name))

    def _relative(self, key: str) -> str:
        return key[len(self.location) :].lstrip("/") if self.location else key

    def _items(self, prefix: str) -> list[dict]:
        key = self._key(prefix).rstrip("/") + "/"
        pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket_name, Prefix=key)
        return [item for page in pages for item in page.get("Contents", [])]

    def _keys(self, prefix: str) -> list[str]:
        return [item["Key"] for item in self._items(prefix)]

    @_guarded
    def walk(self, prefix: str) -> Iterator[str]:
        return iter(sorted(self._relative(key) for key in self._keys(prefix)))

    @_guarded
    def walk_objects(self, prefix: str) -> list[tuple[str, int, datetime]]:
        """(name, size in bytes, last written, UTC) of every object under ``prefix``, sorted by name: one listing."""
        objects = [(self._relative(i["Key"]), int(i["Size"]), i["LastModified"]) for i in self._items(prefix)]
        return sorted(objects)

    @_guarded
    def remove_prefix(self, prefix: str) -> None:
        keys = self._keys(prefix)
        for start in range(0, len(keys), 1000):
            self._client().delete_objects(
                Bucket=self.bucket_name,
                Delete={"Objects": [{"Key": key} for key in keys[start : start + 1000]], "Quiet": True},
            )

    @_guarded
    def open_stream(self, name: str):
        """(a file-like object that streams the object, its size): nothing is buffered in full."""
        return self._get(name)

    @_guarded
    def write_file(self, local: Path, name: str) -> None:
        """Upload a local file under ``name`` (one PUT; multipart from 64 MB)."""
        local = Path(local)
        if local.stat().st_size >= 64 * 1024 * 1024:
            self._client().upload_file(str(local), self.bucket_name, self._key(name))
            return
        with open(local, "rb") as body:
            self._client().put_object(
                Bucket=self.bucket_name,
                Key=self._key(name),
                Body=body,
                ContentType=mimetypes.guess_type(local.name)[0] or "application/octet-stream",
            )

    @_guarded
    def read_file(self, name: str, local: Path) -> None:
        """Download ``name`` into the local file ``local``."""
        body, _ = self._get(name)
        with open(local, "wb") as out:
            for chunk in body.iter_chunks(1024 * 1024):
                out.write(chunk)

    @_guarded
    def check(self) -> None:
        """Raise StorageUnavailable unless the bucket answers (a missing bucket included)."""
        from botocore.exceptions import ClientError

        try:
            self._client().head_bucket(Bucket=self.bucket_name)
        except ClientError as exc:
            raise StorageUnavailable(f"The file storage ({self.describe()}) cannot be used: {_reason(exc)}") from exc
