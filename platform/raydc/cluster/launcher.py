"""Bring a cluster and its control plane up or down from a `ray up` config.

``python -m raydc.cluster.launcher up|down|status CONFIG``, which ``raydc cluster`` runs.

- A config of Ray's fake_multinode provider (``cluster_configs/local-autoscaling.yaml``)
  is a cluster on this machine: a Ray head running the autoscaler with that config (its
  worker "nodes" are raylets here) and a ``raydc server`` pointed at the head's address,
  not starting one of its own, with the config as ``RAYDC_CLUSTER_CONFIG``. Both are
  recorded under ``RAYDC_HOME/clusters/<cluster_name>/``; ``down`` stops exactly those.
- Any other provider goes to ``ray up`` / ``ray down``: the config's head start commands
  start Ray and ``raydc server`` on the head. The control plane's secrets travel in
  ``~/.raydc/cluster.env`` (mode 0600, written here from ``RAYDC_DATABASE_URL`` and
  ``RAYDC_ADMIN_TOKEN``), which the config's ``file_mounts`` copy to the head.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from raydc.cluster.local_head import (
    FAKE_HEAD_NODE_ID,
    LocalRayHead,
    _process_alive,
    is_fake_cluster,
)
from raydc.cluster.state import list_nodes
from raydc.settings import Settings

CONTROL_PLANE_PORT = 8080  # what the cloud configs' head start commands bind
SECRET_VARIABLES = ("RAYDC_DATABASE_URL", "RAYDC_ADMIN_TOKEN")


def load_config(path: Path) -> dict[str, Any]:
    """The `ray up` config; ValueError names the file and the missing field."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the cluster config: {error}") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a cluster config is a mapping")
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type"):
        if key not in config:
            raise ValueError(f"{path}: '{key}' is missing")
    if config["head_node_type"] not in config["available_node_types"]:
        raise ValueError(f"{path}: head_node_type '{config['head_node_type']}' is not a node type")
    return config


@dataclass(frozen=True)
class ControlPlane:
    pid: int
    url: str
    home: str

    @property
    def admin_token_path(self) -> Path:
        return Path(self.home) / "admin_token"


class LocalCluster:
    """A ``fake_multinode`` cluster and its control plane on this machine."""

    def __init__(self, config: dict[str, Any], settings: Settings) -> None:
        self.config = config
        self.state_dir = settings.home / "clusters" / str(config["cluster_name"])
        head_type = config["available_node_types"][config["head_node_type"]]
        self.head = LocalRayHead(
            self.state_dir / "ray",
            num_cpus=int(head_type.get("resources", {}).get("CPU", 1)),
            fake_cluster=config,
        )
        self.port = settings.port
        self.server_record = self.state_dir / "control_plane.json"

    def up(self, timeout_s: float = 180.0) -> ControlPlane:
        info = self.head.start(timeout_s)
        running = self.control_plane()
        if running is not None:
            return running
        home = self.state_dir / "control-plane"
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAYDC_")}
        env.update(
            RAYDC_HOME=str(home),
            RAYDC_PORT=str(self.port),
            RAYDC_RAY_ADDRESS=info.dashboard_url,
            RAYDC_RAY_AUTH_TOKEN=self.head.token,
            RAYDC_CLUSTER_CONFIG=str(self.head.autoscaling_config_path),
        )
        # Settings a user exported for the control plane still apply (database, tokens...).
        env.update({k: v for k, v in os.environ.items() if k.startswith("RAYDC_") and k not in {
            "RAYDC_HOME", "RAYDC_PORT", "RAYDC_RAY_ADDRESS", "RAYDC_RAY_AUTH_TOKEN",
            "RAYDC_CLUSTER_CONFIG", "RAYDC_URL", "RAYDC_TOKEN"}})  # fmt: skip
        with open(self.state_dir / "control_plane.log", "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "raydc.server"], env=env, stdout=log_file,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        plane = ControlPlane(pid=process.pid, url=f"http://127.0.0.1:{self.port}", home=str(home))
        self.server_record.write_text(json.dumps(asdict(plane)))
        deadline = time.monotonic() + timeout_s
        while not _healthy(plane.url):
            if process.poll() is not None:
                self.server_record.unlink(missing_ok=True)
                raise RuntimeError(
                    f"raydc server exited with {process.returncode}; "
                    f"see {self.state_dir / 'control_plane.log'}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"raydc server not healthy after {timeout_s}s")
            time.sleep(0.5)
        return plane

    def control_plane(self) -> ControlPlane | None:
        try:
            plane = ControlPlane(**json.loads(self.server_record.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return plane if _process_alive(plane.pid) and _healthy(plane.url) else None

    def down(self, grace_s: float = 30.0) -> None:
        """The control plane first (it must not see the cluster vanish under running
        work and record failures), then the head with every node it started."""
        with contextlib.suppress(OSError, ValueError, TypeError):
            plane = ControlPlane(**json.loads(self.server_record.read_text()))
            _stop_group(plane.pid, grace_s)
        self.server_record.unlink(missing_ok=True)
        self.head.stop()

    def kill_node(self, node_id: str) -> int:
        """Kill one worker node as a machine dies (chaos testing): its raylet and every
        process it started, which carry the node's id in RAY_OVERRIDE_NODE_ID_FOR_TESTING
        as the fake provider started them. Returns how many processes were killed."""
        if node_id == FAKE_HEAD_NODE_ID:
            raise ValueError("that is the head node: use `down` to stop the cluster")
        info = self.head.recorded()
        if info is None:
            raise ValueError(f"cluster {self.config['cluster_name']} is not up")
        # Every fake cluster numbers its nodes alike: the head's RAY_ADDRESS, which all
        # processes of this cluster inherit, tells its nodes from another cluster's.
        markers = {
            f"RAY_OVERRIDE_NODE_ID_FOR_TESTING={node_id}".encode(),
            f"RAY_ADDRESS={info.gcs_address}".encode(),
        }
        killed = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if markers <= set(environ):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
        return killed

    def status(self) -> dict[str, Any]:
        info = self.head.recorded() if self.head.running() else None
        plane = self.control_plane()
        nodes = []
        if info is not None:
            with contextlib.suppress(httpx.HTTPError):
                nodes = [asdict(node) for node in list_nodes(info.dashboard_url, self.head.token)]
        return {
            "cluster": self.config["cluster_name"],
            "head": asdict(info) if info is not None else None,
            "control_plane": plane.url if plane is not None else None,
            "admin_token_path": str(plane.admin_token_path) if plane is not None else None,
            "nodes": nodes,
        }


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _stop_group(pid: int, grace_s: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def write_secrets(path: Path = Path("~/.raydc/cluster.env")) -> list[str]:
    """The control plane's secrets from this environment into the file the configs mount
    on the head (mode 0600); returns the variables written."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    found = [name for name in SECRET_VARIABLES if os.environ.get(name)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        for name in found:
            handle.write(f"{name}={_shell_quote(os.environ[name])}\n")
    os.chmod(path, 0o600)
    return found


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _ray(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "ray"), *args]


def remote_up(config_path: Path, timeout_s: float = 900.0) -> str:
    """``ray up``, then wait for the control plane the head start commands run."""
    written = write_secrets()
    missing = [name for name in SECRET_VARIABLES if name not in written]
    if missing:
        print(f"note: {', '.join(missing)} not set: the head uses its defaults (a SQLite "
              "file, an admin token generated into ~/.raydc/admin_token on the head)")  # fmt: skip
    subprocess.run(_ray("up", "-y", "--no-config-cache", str(config_path)), check=True)
    head_ip = (
        subprocess.run(
            _ray("get-head-ip", str(config_path)), check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    url = f"http://{head_ip}:{CONTROL_PLANE_PORT}"
    deadline = time.monotonic() + timeout_s
    while not _healthy(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the control plane at {url} did not answer in {timeout_s}s")
        time.sleep(2)
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raydc cluster")
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("config", type=Path)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not is_fake_cluster(config):
        if args.action == "up":
            print(f"control plane: {remote_up(args.config)}")
        elif args.action == "down":
            subprocess.run(_ray("down", "-y", str(args.config)), check=True)
        else:
            subprocess.run(_ray("exec", str(args.config), "ray status"), check=True)
        return 0
    cluster = LocalCluster(config, Settings())
    if args.action == "up":
        plane = cluster.up()
        print(f"control plane: {plane.url}")
        print(f"admin token:   {plane.admin_token_path}")
        print(f"ray dashboard: {cluster.head.recorded().dashboard_url}")  # type: ignore[union-attr]
        print(f"  export RAYDC_URL={plane.url} RAYDC_TOKEN=$(cat {plane.admin_token_path})")
    elif args.action == "down":
        cluster.down()
        print(f"cluster {config['cluster_name']} is down")
    else:
        print(json.dumps(cluster.status(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
