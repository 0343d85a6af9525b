"""Uploaded working directories: size-limited, content-addressed, safely extracted."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session

from raydc.server.errors import InvalidInput, PayloadTooLarge
from raydc.store.models import CodeBundleRow

MAX_MEMBERS = 20_000


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise InvalidInput.field(("zip",), f"absolute path in zip: '{name}'")
    if ".." in path.parts:
        raise InvalidInput.field(("zip",), f"path escapes the working dir: '{name}'")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InvalidInput.field(("zip",), f"symbolic link in zip: '{name}'")


def validate_zip(data: bytes, max_unpacked_bytes: int) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise InvalidInput.field(("zip",), "body is not a zip archive") from error
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise InvalidInput.field(("zip",), f"more than {MAX_MEMBERS} files in zip")
    unpacked = 0
    for info in members:
        _check_member(info)
        unpacked += info.file_size
    if unpacked > max_unpacked_bytes:
        raise PayloadTooLarge(
            f"zip unpacks to {unpacked} bytes, over the limit of {max_unpacked_bytes}"
        )
    return archive


def bundle_dir(code_dir: Path, ref: str) -> Path:
    return code_dir / ref.removeprefix("sha256:")


def store_code(
    session: Session, tenant: str, data: bytes, code_dir: Path, max_unpacked_bytes: int
) -> str:
    archive = validate_zip(data, max_unpacked_bytes)
    ref = "sha256:" + hashlib.sha256(data).hexdigest()
    target = bundle_dir(code_dir, ref)
    if not target.exists():
        code_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=code_dir, prefix=".upload-"))
        try:
            for info in archive.infolist():
                destination = staging / PurePosixPath(info.filename.replace("\\", "/"))
                # Belt and braces: the resolved path must stay inside the staging dir.
                if not destination.resolve().is_relative_to(staging.resolve()):
                    raise InvalidInput.field(("zip",), f"path escapes: '{info.filename}'")
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink)
            try:
                os.rename(staging, target)
            except OSError:
                if not target.exists():  # not a concurrent upload of the same bundle
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if session.get(CodeBundleRow, (ref, tenant)) is None:
        session.add(CodeBundleRow(ref=ref, tenant=tenant, size_bytes=len(data)))
    return ref


def tenant_has_bundle(session: Session, tenant: str, ref: str) -> bool:
    return session.get(CodeBundleRow, (ref, tenant)) is not None
