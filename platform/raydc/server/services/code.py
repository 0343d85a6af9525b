"""Uploaded working directories: size-limited, content-addressed, safely extracted.

A zip is hostile until checked. ``zipfile`` only parses the central directory here; every
member's data is read from its local header and inflated by this module, so that what
is written is counted as it is written, whatever the zip declares:

- before anything is written (``validate_zip``): names (no absolute path, no ``..``, no
  control character, at most 255 bytes a component and 1024 a path, no duplicate, no
  file that is also a directory), types (files and directories only), no encryption,
  stored or deflate only, local headers that agree with the central directory, members
  that do not overlap, a declared total within the per-upload limit, and no member over
  1 MiB that declares a compression ratio above 200:1 (source code deflates 3-10:1; a
  bomb ~1000:1);
- while extracting (``_extract``): a member that inflates past its declared size, stops
  short of it, has a bad CRC or trailing data is refused, and the upload stops before the
  bytes written would pass the per-upload limit.

Nested zips are stored as files, never opened. Any refusal removes the staging dir.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from raydc.server.errors import InvalidInput, PayloadTooLarge
from raydc.server.services.tenants import check_storage
from raydc.store.models import CodeBundleRow, TenantRow

MAX_MEMBERS = 20_000
MAX_NAME_BYTES = 255  # one path component: NAME_MAX on Linux
MAX_PATH_BYTES = 1024  # a member's whole path, well inside PATH_MAX with the bundle dir
MAX_RATIO = 200  # declared unpacked : compressed, for members over RATIO_FLOOR
RATIO_FLOOR = 1024 * 1024  # a small member cannot amplify much whatever its ratio
CHUNK = 1024 * 1024  # inflate and write this much at a time
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes, from the signature on
_LOCAL_SIGNATURE = b"PK\x03\x04"
_ENCRYPTED = 0x1
_UTF8_NAME = 0x800
_ABSOLUTE = re.compile(r"^(/|[A-Za-z]:/)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOT_FILES = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFIFO: "a fifo",
    stat.S_IFSOCK: "a socket",
}


def _refuse(name: str, reason: str) -> InvalidInput:
    return InvalidInput.field(("zip",), f"zip member {name!r}: {reason}")


@dataclass(frozen=True)
class Member:
    """A checked member: where it lands and where its data lies in the body."""

    info: zipfile.ZipInfo
    parts: tuple[str, ...]  # its path, normalized; () for a directory entry of the root
    is_dir: bool
    data_start: int  # offset of its (compressed) data in the body

    @property
    def name(self) -> str:
        return self.info.orig_filename


@dataclass(frozen=True)
class CheckedZip:
    members: list[Member]
    declared_bytes: int  # what the members declare they unpack to


def _name_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    name = info.orig_filename  # `filename` is cut at a NUL; the original is not
    if _CONTROL.search(name):
        raise _refuse(name, "control character in name")
    posix = name.replace("\\", "/")
    if _ABSOLUTE.match(posix):
        raise _refuse(name, "absolute path")
    parts = tuple(part for part in posix.split("/") if part not in ("", "."))
    if ".." in parts:
        raise _refuse(name, "path escapes the working dir")
    if any(len(os.fsencode(part)) > MAX_NAME_BYTES for part in parts):
        raise _refuse(name, f"a path component over {MAX_NAME_BYTES} bytes")
    if len(os.fsencode("/".join(parts))) > MAX_PATH_BYTES:
        raise _refuse(name, f"path over {MAX_PATH_BYTES} bytes")
    return parts


def _is_dir(info: zipfile.ZipInfo) -> bool:
    name = info.orig_filename
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind in _NOT_FILES:
        raise _refuse(name, f"{_NOT_FILES[kind]}, not a regular file or directory")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _refuse(name, f"unknown file type {oct(kind)}")
    is_dir = name.endswith(("/", "\\")) or kind == stat.S_IFDIR
    if is_dir and info.file_size:
        raise _refuse(name, "a directory with data")
    return is_dir


def _data_start(data: bytes, info: zipfile.ZipInfo) -> int:
    """Where the member's data begins, after a local header that agrees with the
    central directory (two readers of one zip must not see two different files)."""
    name = info.orig_filename
    start = info.header_offset
    if start < 0 or start + _LOCAL_HEADER.size > len(data):
        raise _refuse(name, "local header outside the archive")
    signature, _, flags, method, _, _, _, _, _, name_len, extra_len = _LOCAL_HEADER.unpack_from(
        data, start
    )
    if signature != _LOCAL_SIGNATURE:
        raise _refuse(name, "no local header where the central directory points")
    if flags & _ENCRYPTED:
        raise _refuse(name, "encrypted")
    if method != info.compress_type:
        raise _refuse(name, "local header and central directory disagree on compression")
    raw_name = name.encode("utf-8" if info.flag_bits & _UTF8_NAME else "cp437")
    name_start = start + _LOCAL_HEADER.size
    if data[name_start : name_start + name_len] != raw_name:
        raise _refuse(name, "local header and central directory disagree on the name")
    begin = name_start + name_len + extra_len
    if begin + info.compress_size > len(data):
        raise _refuse(name, "truncated: its data runs past the end of the archive")
    return begin


def _check_member(data: bytes, info: zipfile.ZipInfo) -> Member:
    name = info.orig_filename
    parts = _name_parts(info)
    is_dir = _is_dir(info)
    if not parts and not is_dir:
        raise _refuse(name, "not a file name")
    if info.flag_bits & _ENCRYPTED:
        raise _refuse(name, "encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # bzip2 and lzma are left out on purpose: zipfile inflates them without bound.
        raise _refuse(name, f"compression method {info.compress_type} (stored or deflate only)")
    return Member(info, parts, is_dir, _data_start(data, info))


def _check_layout(members: list[Member]) -> None:
    """Each path once; no file where another member needs a directory."""
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    seen: set[tuple[str, ...]] = set()
    for member in members:
        if not member.parts:
            continue
        if member.parts in seen:
            raise _refuse(member.name, "the same path is in the zip more than once")
        seen.add(member.parts)
        (dirs if member.is_dir else files).add(member.parts)
        dirs.update(member.parts[:i] for i in range(1, len(member.parts)))
    for member in members:
        if member.parts in files and member.parts in dirs:
            raise _refuse(member.name, "both a file and a directory")


def _check_overlap(members: list[Member], central_start: int) -> None:
    """Members must not share bytes: overlapping members are how a zip inflates the same
    compressed kernel many times over (Fifield's non-recursive bomb)."""
    ordered = sorted(members, key=lambda m: m.info.header_offset)
    for member, following in itertools.pairwise(ordered):
        if member.data_start + member.info.compress_size > following.info.header_offset:
            raise _refuse(member.name, f"overlaps member {following.name!r}")
    if ordered and ordered[-1].data_start + ordered[-1].info.compress_size > central_start:
        raise _refuse(ordered[-1].name, "overlaps the central directory")


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        ValueError,
        EOFError,
        OSError,
        NotImplementedError,
    ) as error:
        # ValueError covers a name that is not valid UTF-8 under the UTF-8 flag.
        raise InvalidInput.field(
            ("zip",), f"body is not a readable zip archive: {error}"
        ) from error


def validate_zip(data: bytes, max_unpacked_bytes: int) -> CheckedZip:
    """Everything that can be checked without inflating a byte."""
    archive = _open_zip(data)
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InvalidInput.field(("zip",), f"more than {MAX_MEMBERS} files in zip")
    members = [_check_member(data, info) for info in infos]
    _check_layout(members)
    _check_overlap(members, archive.start_dir)
    declared = sum(m.info.file_size for m in members)
    if declared > max_unpacked_bytes:
        raise PayloadTooLarge(
            f"zip unpacks to {declared} bytes, over the limit of {max_unpacked_bytes}"
        )
    for member in members:
        size, packed = member.info.file_size, member.info.compress_size
        if size > RATIO_FLOOR and size > MAX_RATIO * max(packed, 1):
            raise PayloadTooLarge(
                f"zip member {member.name!r} declares a compression ratio of "
                f"{size // max(packed, 1)}:1, over {MAX_RATIO}:1 (zip bomb?)"
            )
    return CheckedZip(members, declared)


def _inflate(member: Member, data: bytes) -> Iterator[bytes]:
    """The member's bytes, CHUNK at a most at a time, read from its own compressed range."""
    info = member.info
    raw = memoryview(data)[member.data_start : member.data_start + info.compress_size]
    if info.compress_type == zipfile.ZIP_STORED:
        for offset in range(0, len(raw), CHUNK):
            yield bytes(raw[offset : offset + CHUNK])
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    position = 0
    pending: bytes | memoryview = b""
    try:
        while not inflater.eof:
            if not pending:
                if position >= len(raw):
                    out = inflater.decompress(b"", CHUNK)  # output still held inside zlib
                    if not out:
                        break
                    yield out
                    continue
                pending = raw[position : position + CHUNK]
                position += CHUNK
            out = inflater.decompress(pending, CHUNK)
            pending = inflater.unconsumed_tail
            if out:
                yield out
    except zlib.error as error:
        raise _refuse(member.name, f"corrupt deflate data ({error})") from error
    if not inflater.eof:
        raise _refuse(member.name, "truncated: the deflate stream stops before its end")
    if pending or inflater.unused_data or position < len(raw):
        raise _refuse(member.name, "data after the end of its deflate stream")


def _extract(checked: CheckedZip, data: bytes, staging: Path, max_unpacked_bytes: int) -> int:
    """Write the members under staging; returns the bytes written."""
    written = 0
    for member in checked.members:
        destination = staging.joinpath(*member.parts)
        if member.is_dir:
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        declared = member.info.file_size
        size, crc = 0, 0
        # O_EXCL|O_NOFOLLOW: never write through anything already there.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with open(os.open(destination, flags, 0o644), "wb") as sink:
            for chunk in _inflate(member, data):
                if size + len(chunk) > declared:
                    raise _refuse(member.name, f"inflates past the {declared} bytes it declares")
                if written + len(chunk) > max_unpacked_bytes:
                    raise PayloadTooLarge(
                        f"zip unpacks to more than the limit of {max_unpacked_bytes} bytes "
                        f"(at member {member.name!r})"
                    )
                sink.write(chunk)
                size += len(chunk)
                written += len(chunk)
                crc = zlib.crc32(chunk, crc)
        if size != declared:
            raise _refuse(member.name, f"truncated: {size} bytes of the {declared} it declares")
        if crc != member.info.CRC:
            raise _refuse(member.name, "bad CRC-32")
    return written


def bundle_dir(code_dir: Path, ref: str) -> Path:
    return code_dir / ref.removeprefix("sha256:")


def store_code(
    session: Session, tenant: str, data: bytes, code_dir: Path, max_unpacked_bytes: int
) -> str:
    checked = validate_zip(data, max_unpacked_bytes)
    ref = "sha256:" + hashlib.sha256(data).hexdigest()
    existing = session.get(CodeBundleRow, (ref, tenant))
    row = session.get(TenantRow, tenant)
    if existing is None and row is not None:  # a bundle the tenant has costs nothing again
        check_storage(session, row, adding=checked.declared_bytes)
    target = bundle_dir(code_dir, ref)
    # Another tenant's copy of the same bytes was extracted and checked member by member,
    # so the declared total is what these bytes unpack to.
    unpacked = checked.declared_bytes
    if not target.exists():
        code_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=code_dir, prefix=".upload-"))
        try:
            unpacked = _extract(checked, data, staging, max_unpacked_bytes)
            try:
                os.rename(staging, target)
            except OSError:
                if not target.exists():  # not a concurrent upload of the same bundle
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if existing is None:
        session.add(
            CodeBundleRow(ref=ref, tenant=tenant, size_bytes=len(data), unpacked_bytes=unpacked)
        )
    return ref


def tenant_has_bundle(session: Session, tenant: str, ref: str) -> bool:
    return session.get(CodeBundleRow, (ref, tenant)) is not None
