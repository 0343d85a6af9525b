"""POST /v1/code against hostile zips: every refusal is a 4xx naming the member, and leaves
nothing on disk; the bytes written are counted, whatever the zip declares."""

from __future__ import annotations

import io
import random
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from raydc.server.control_plane import ControlPlane
from raydc.settings import Settings
from tests.unit.factories import ADMIN, ADMIN_TOKEN

ZIP = {"content-type": "application/zip"}
MiB = 1024 * 1024


@pytest.fixture
def settings(tmp_path: Path, database_url_for: Callable[..., str]) -> Settings:
    # Room for a few MiB, so the ratio check (members over 1 MiB) is reachable.
    return Settings(
        home=tmp_path / "home",
        database_url=database_url_for("sqlite://"),
        admin_token=ADMIN_TOKEN,
        max_code_bytes=4 * MiB,
        max_code_unpacked_bytes=8 * MiB,
        jobs_user="none",
    )


def make_zip(
    files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED, mode: int | None = None
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


# Byte offsets of fields in a local file header and a central directory entry.
LOCAL = {"flags": 6, "method": 8, "crc": 14, "csize": 18, "usize": 22}
CENTRAL = {"flags": 8, "method": 10, "crc": 16, "csize": 20, "usize": 24}
WIDTH = {"flags": "<H", "method": "<H", "crc": "<I", "csize": "<I", "usize": "<I"}


def patch(data: bytes, **fields: int) -> bytes:
    """Rewrite fields of a one-member zip in both its local header and its central entry."""
    patched = bytearray(data)
    central = data.rfind(b"PK\x01\x02")
    for name, value in fields.items():
        struct.pack_into(WIDTH[name], patched, LOCAL[name], value)
        struct.pack_into(WIDTH[name], patched, central + CENTRAL[name], value)
    return bytes(patched)


def upload(api: TestClient, data: bytes) -> Any:
    return api.post("/v1/code", content=data, headers={**ADMIN, **ZIP})


def stored(control_plane: ControlPlane) -> list[Path]:
    """Everything under the code dir: bundles and staging dirs alike."""
    code_dir = control_plane.settings.code_dir
    return sorted(code_dir.rglob("*")) if code_dir.exists() else []


def assert_refused(
    api: TestClient, control_plane: ControlPlane, data: bytes, status: int, *words: str
) -> None:
    response = upload(api, data)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    message = detail[0]["msg"] if isinstance(detail, list) else detail
    if isinstance(detail, list):
        assert detail[0]["loc"] == ["body", "zip"]
    for word in words:
        assert word in message, message
    assert stored(control_plane) == []


# -- sizes -------------------------------------------------------------------------------


def test_a_member_inflating_past_its_declared_size_is_refused(
    api: TestClient, control_plane: ControlPlane
) -> None:
    # 6 MiB of zeros declared as 1,000 bytes, with the CRC of those 1,000 bytes: a reader
    # that trusts the declaration stops at 1,000 bytes and calls the member good.
    zeros = b"\0" * (6 * MiB)
    data = patch(make_zip({"bomb.bin": zeros}), usize=1000, crc=zlib.crc32(zeros[:1000]))
    assert_refused(api, control_plane, data, 422, "'bomb.bin'", "declares")


def test_a_member_over_the_compression_ratio_is_refused_before_writing(
    api: TestClient, control_plane: ControlPlane
) -> None:
    # 4 MiB of zeros deflate ~1000:1: within the unpacked limit, but a bomb's ratio.
    data = make_zip({"zeros.bin": b"\0" * (4 * MiB)})
    assert_refused(api, control_plane, data, 413, "'zeros.bin'", "ratio")


def test_small_or_ordinary_members_pass_the_ratio_check(
    api: TestClient, control_plane: ControlPlane
) -> None:
    files = {"small-zeros.bin": b"\0" * (MiB // 2), "code.py": text_bytes(3 * MiB)}
    response = upload(api, make_zip(files))
    assert response.status_code == 201, response.text
    bundle = control_plane.settings.code_dir / response.json()["ref"].removeprefix("sha256:")
    assert (bundle / "code.py").stat().st_size == 3 * MiB
    assert (bundle / "small-zeros.bin").stat().st_size == MiB // 2


def text_bytes(size: int, seed: int = 0) -> bytes:
    """Source-like text: deflates a few times over, far from a bomb's ratio."""
    lines = [b"def f(x):\n", b"    return x + %d\n" % seed, b"# a comment\n", b"\n"]
    return b"".join(random.Random(seed).choices(lines, k=size // 8))[:size]


def test_honest_declared_sizes_over_the_limit_are_refused(
    api: TestClient, control_plane: ControlPlane
) -> None:
    too_big = {f"part{i}.py": text_bytes(3 * MiB, i) for i in range(3)}  # 9 MiB > 8 MiB
    assert_refused(api, control_plane, make_zip(too_big), 413, "unpacks to")


# -- structure ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"a": b"x", "a/b": b"y"}, ["'a'"]),
        ({"a/b": b"y", "a": b"x"}, ["'a'"]),
        ({"a/": b"", "a": b"x"}, ["'a'"]),
        ({"dup.py": b"1", "./dup.py": b"2"}, ["dup.py", "more than once"]),
        ({".": b"x"}, ["'.'"]),
        ({"x" * 256: b"x"}, ["255"]),
        ({"/".join(["d" * 200] * 6): b"x"}, ["1024"]),
        ({"a\nb.py": b"x"}, ["control character"]),
        ({"C:/evil.py": b"x"}, ["absolute"]),
        ({"C:\\evil.py": b"x"}, ["absolute"]),
        ({"\\evil.py": b"x"}, ["absolute"]),
        ({"ok/../../evil.py": b"x"}, ["escapes"]),
    ],
)
def test_bad_names_are_422_naming_the_member(
    api: TestClient, control_plane: ControlPlane, files: dict[str, bytes], words: list[str]
) -> None:
    with_others = {"ok.py": b"pass\n", **files}
    assert_refused(api, control_plane, make_zip(with_others), 422, *words)


def test_a_colon_inside_a_name_is_a_plain_file_name(
    api: TestClient, control_plane: ControlPlane
) -> None:
    name = "x" * 255
    response = upload(api, make_zip({"a:b.txt": b"x", f"deep/{name}": b"y"}))
    assert response.status_code == 201, response.text
    bundle = control_plane.settings.code_dir / response.json()["ref"].removeprefix("sha256:")
    assert (bundle / "a:b.txt").read_bytes() == b"x"
    assert (bundle / "deep" / name).read_bytes() == b"y"


def test_a_nul_in_a_name_is_refused(api: TestClient, control_plane: ControlPlane) -> None:
    # zipfile cuts a name at NUL when reading, so "evil.py\0.txt" would land as "evil.py".
    data = make_zip({"evil.pyX.txt": b"x"}).replace(b"evil.pyX.txt", b"evil.py\0.txt")
    assert_refused(api, control_plane, data, 422, "control character")


@pytest.mark.parametrize(
    ("mode", "word"),
    [(stat.S_IFIFO | 0o644, "fifo"), (stat.S_IFCHR | 0o644, "device"), (stat.S_IFSOCK, "socket")],
)
def test_members_that_are_not_files_or_dirs_are_refused(
    api: TestClient, control_plane: ControlPlane, mode: int, word: str
) -> None:
    assert_refused(api, control_plane, make_zip({"node": b""}, mode=mode), 422, "'node'", word)


# -- encodings and corruption ------------------------------------------------------------


def test_an_encrypted_member_is_refused(api: TestClient, control_plane: ControlPlane) -> None:
    data = patch(make_zip({"secret.py": b"x = 1\n"}), flags=0x1)
    assert_refused(api, control_plane, data, 422, "'secret.py'", "encrypted")


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 9, 99])
def test_compression_other_than_stored_or_deflate_is_refused(
    api: TestClient, control_plane: ControlPlane, method: int
) -> None:
    data = patch(make_zip({"m.py": b"x = 1\n" * 100}), method=method)
    assert_refused(api, control_plane, data, 422, "'m.py'", "compression method")


def test_a_bad_crc_is_refused(api: TestClient, control_plane: ControlPlane) -> None:
    data = make_zip({"good.py": b"a", "bad.py": b"x = 1\n" * 100})
    central = data.rfind(b"PK\x01\x02")  # the last entry: bad.py
    local = data.find(b"PK\x03\x04", 1)
    corrupt = bytearray(data)
    for base, offset in ((local, LOCAL["crc"]), (central, CENTRAL["crc"])):
        corrupt[base + offset] ^= 0xFF
    assert_refused(api, control_plane, bytes(corrupt), 422, "'bad.py'", "CRC")


def test_truncated_member_data_is_refused(api: TestClient, control_plane: ControlPlane) -> None:
    payload = random.Random(1).randbytes(20_000)
    data = make_zip({"t.bin": payload})
    csize = struct.unpack_from("<I", data, LOCAL["csize"])[0]
    # The deflate stream cut in half: the declared compressed size is half the real one.
    assert_refused(api, control_plane, patch(data, csize=csize // 2), 422, "'t.bin'")
    # A compressed size running past the end of the body.
    assert_refused(api, control_plane, patch(data, csize=len(data) * 2), 422, "'t.bin'")


def test_overlapping_members_are_refused(api: TestClient, control_plane: ControlPlane) -> None:
    # The first member's compressed size is stretched over the second member's header: a
    # reader stops at the end of the deflate stream and never notices; the members overlap.
    data = make_zip({"a.py": b"a = 1\n", "b.py": b"b = 2\n"})
    second = data.find(b"PK\x03\x04", 1)
    csize = struct.unpack_from("<I", data, LOCAL["csize"])[0]
    stretched = bytearray(data)
    struct.pack_into("<I", stretched, LOCAL["csize"], csize + 40)
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", stretched, central + CENTRAL["csize"], csize + 40)
    assert second < 30 + 4 + csize + 40
    assert_refused(api, control_plane, bytes(stretched), 422, "'a.py'")


def test_a_central_name_unlike_the_local_name_is_refused(
    api: TestClient, control_plane: ControlPlane
) -> None:
    data = make_zip({"aaa.py": b"x"})
    central = data.rfind(b"PK\x01\x02")
    data = data[:central] + data[central:].replace(b"aaa.py", b"bbb.py")
    assert_refused(api, control_plane, data, 422, "'bbb.py'")


def test_random_corruption_is_always_a_4xx_and_leaves_no_staging_dir(
    api: TestClient, control_plane: ControlPlane
) -> None:
    files = {"pkg/__init__.py": b"", "pkg/train.py": b"def f(c):\n    return c\n" * 50}
    good = make_zip({**files, "data/table.csv": b"1,2,3\n" * 500})
    rng = random.Random(18)
    for attempt in range(300):
        data = bytearray(good)
        if attempt % 3 == 0:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        response = upload(api, bytes(data))
        assert response.status_code in (201, 413, 422), (attempt, response.text)
        code_dir = control_plane.settings.code_dir
        assert not list(code_dir.glob(".upload-*")), attempt
