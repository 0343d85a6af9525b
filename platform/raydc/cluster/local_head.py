"""A single-node Ray head owned by ``raydc server`` for development.

The head runs as ``ray start --head --block`` in its own process group, so stopping it
touches only its own processes (never ``ray stop``, which kills every Ray on the machine).
Ray's token auth is on: raydc writes the token file and hands it to Ray through
``RAY_AUTH_TOKEN_PATH``. If the control plane crashed and left its head running, the next
start adopts that head, so running jobs survive a control-plane restart.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from raydc.cluster.haproxy import serve_ingress_env, stop_haproxy
from raydc.cluster.job_env import job_environment
from raydc.cluster.jobs_user import JobsUser, check_python, hand_over
from raydc.cluster.state import list_nodes

log = logging.getLogger(__name__)
# The head's node id in a fake multi-node cluster: Ray's FAKE_HEAD_NODE_ID (not imported
# from ray.autoscaler._private, which would load ray into every control plane).
FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"
FAKE_PROVIDER_CLASS = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"


def is_fake_cluster(config: dict[str, Any]) -> bool:
    """A `ray up` config of Ray's fake_multinode provider (nodes are raylets on this host)."""
    provider = config.get("provider") or {}
    return provider.get("type") == "fake_multinode" or (
        provider.get("type") == "external" and provider.get("module") == FAKE_PROVIDER_CLASS
    )


@dataclass(frozen=True)
class HeadInfo:
    pid: int
    dashboard_url: str
    gcs_address: str
    auth_token_path: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_or_create_token(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def dashboard_ready(url: str, token: str, timeout_s: float = 2.0) -> bool:
    try:
        response = httpx.get(
            f"{url}/api/version", headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def head_node_registered(url: str, token: str) -> bool:
    try:
        return any(node.alive for node in list_nodes(url, token, timeout_s=2.0))
    except httpx.HTTPError:
        return False


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalRayHead:
    """``fake_cluster``: a `ray up` config of the ``fake_multinode`` provider. The head then
    runs Ray's autoscaler with it (``RAY_FAKE_CLUSTER=1``), which starts and stops worker
    nodes as raylets on this machine, in the head's process group.

    ``jobs_user``: the unprivileged user the head (and so every job) runs as, when the
    control plane is root (cluster.jobs_user). ``env_allow``: names beyond
    cluster.job_env's allowlist that the head and its jobs inherit from this process.

    The dashboard (Ray's job API) binds loopback. Ray 2.60's GCS, raylet and worker gRPC
    servers listen on every interface whatever ``--node-ip-address`` says (measured;
    SECURITY.md): a host firewall keeps them off the network."""

    def __init__(
        self,
        state_dir: Path,
        num_cpus: int | None = None,
        fake_cluster: dict[str, Any] | None = None,
        *,
        jobs_user: JobsUser | None = None,
        env_allow: tuple[str, ...] = (),
    ) -> None:
        self.state_dir = state_dir
        self.num_cpus = num_cpus
        self.fake_cluster = fake_cluster
        self.jobs_user = jobs_user
        self.env_allow = env_allow
        self.autoscaling_config_path = state_dir / "autoscaling.yaml"
        self.token_path = state_dir / "auth_token"
        self.info_path = state_dir / "head.json"
        self.log_path = state_dir / "head.log"
        # Ray's socket paths must stay under ~107 bytes, so the temp dir is short.
        digest = hashlib.sha1(str(state_dir).encode()).hexdigest()[:10]
        self.temp_dir = Path("/tmp") / f"raydc-{digest}"
        self.haproxy_dir = self.temp_dir / "hap"  # Serve's HAProxy files (cluster.haproxy)
        self.info: HeadInfo | None = None

    @property
    def token(self) -> str:
        return read_or_create_token(self.token_path)

    def running(self) -> bool:
        info = self.info or self.recorded()
        return info is not None and _process_alive(info.pid)

    def start(self, timeout_s: float = 120.0) -> HeadInfo:
        left = self.recorded()
        if left is not None and _process_alive(left.pid):
            # Never run a second head beside a live one: its jobs would run twice.
            if self._wait_ready(left, timeout_s):
                log.info("re-attached to the local Ray head left running (pid %s)", left.pid)
                self.info = left
                return left
            log.warning("the local Ray head left running does not answer; replacing it")
            self._kill_group(left.pid)
        stop_haproxy(self.haproxy_dir)  # one a dead head left would hold Serve's port
        read_or_create_token(self.token_path)  # Ray reads it at start
        if self.jobs_user is not None:
            self._hand_over_to_jobs_user(self.jobs_user)
        gcs_port, dashboard_port = free_port(), free_port()
        command = [
            str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
            f"--port={gcs_port}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}", f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats", "--include-dashboard=true",
            # Ray's fixed default ports (dashboard agent 52365, client server 10001)
            # would clash with a second head on the same machine, whose job agent then
            # never comes up ("No available agent to submit job").
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
        ]  # fmt: skip
        if self.num_cpus is not None:
            command.append(f"--num-cpus={self.num_cpus}")
        # Never a copy of os.environ: the control plane's secrets must not reach a job.
        env = job_environment(os.environ, self.env_allow)
        if self.jobs_user is not None:
            env.update(HOME=str(self.temp_dir / "home"), USER=self.jobs_user.name,
                       LOGNAME=self.jobs_user.name)  # fmt: skip
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path))
        env.update(serve_ingress_env(env, self.haproxy_dir, (free_port(), free_port())))
        if self.fake_cluster is not None:
            command.append(f"--autoscaling-config={self._write_autoscaling_config(gcs_port)}")
            env.update(self._fake_cluster_env())
        # Every process of this head (Train's and Tune's helper actors use Ray's state
        # API) addresses this cluster, not "the" Ray on the machine: with another Ray
        # instance beside it, auto-detection fails and Train's PlacementGroupCleaner
        # could never free a stopped trial's worker group.
        env["RAY_ADDRESS"] = f"127.0.0.1:{gcs_port}"
        # Job drivers must find the same Python (and raydc) as the control plane.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        user: dict[str, Any] = {}
        if self.jobs_user is not None:
            user = {"user": self.jobs_user.uid, "group": self.jobs_user.gid,
                    "extra_groups": [], "cwd": str(self.temp_dir)}  # fmt: skip
        with open(self.log_path, "ab") as log_file:
            process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, stdin=subprocess.DEVNULL, **user,
            )  # fmt: skip
        info = HeadInfo(
            pid=process.pid,
            dashboard_url=f"http://127.0.0.1:{dashboard_port}",
            gcs_address=f"127.0.0.1:{gcs_port}",
            auth_token_path=str(self.token_path),
        )
        # Recorded before it is ready, so a crash now cannot leave an unknown head behind.
        self.info_path.write_text(json.dumps(asdict(info)))
        if not self._wait_ready(info, timeout_s, process):
            self._kill_group(process.pid)
            self.info_path.unlink(missing_ok=True)
            raise RuntimeError(f"local Ray head not ready after {timeout_s}s; see {self.log_path}")
        self.info = info
        log.info("started a local Ray head, dashboard %s", info.dashboard_url)
        return info

    def _hand_over_to_jobs_user(self, user: JobsUser) -> None:
        """What the head runs as ``user`` needs as its own: Ray's temp dir (sessions,
        Serve's HAProxy files, the jobs' HOME) and this state dir, whose token file Ray
        reads. Nothing else of the control plane's is in it."""
        check_python(user)
        (self.temp_dir / "home").mkdir(parents=True, exist_ok=True)
        hand_over(self.temp_dir, user)
        hand_over(self.state_dir, user)

    def _write_autoscaling_config(self, gcs_port: int) -> Path:
        """The fake cluster's config with this head's GCS address (the provider starts
        worker raylets against it; its default is the fixed port 6379) and the head's
        node id, which autoscaler v2 matches to the provider's head."""
        from ray.util import get_node_ip_address  # ray is heavy: only for a fake cluster

        assert self.fake_cluster is not None
        config = copy.deepcopy(self.fake_cluster)
        if config["provider"].get("type") == "fake_multinode":
            # Its defaults file is missing from the Ray 2.60 wheel; as an external
            # provider the same class needs none.
            config["provider"].update(type="external", module=FAKE_PROVIDER_CLASS)
        config["provider"].update(
            gcs_address=f"{get_node_ip_address()}:{gcs_port}",
            head_node_id=FAKE_HEAD_NODE_ID,
            launch_multiple=True,
        )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.autoscaling_config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.autoscaling_config_path

    @staticmethod
    def _fake_cluster_env() -> dict[str, str]:
        """As Ray's own AutoscalingCluster runs it: autoscaler v2, which tells nodes apart
        by instance id (v1 tells them apart by IP, and every fake node has this one's)."""
        return {
            "RAY_FAKE_CLUSTER": "1",
            "RAY_enable_autoscaler_v2": "1",
            "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
            "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        }

    def stop(self, grace_s: float = 10.0) -> None:
        info = self.info or self.recorded()
        if info is not None:
            self._kill_group(info.pid, grace_s)
        stop_haproxy(self.haproxy_dir)
        self.info_path.unlink(missing_ok=True)
        self.info = None

    def recorded(self) -> HeadInfo | None:
        try:
            return HeadInfo(**json.loads(self.info_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _wait_ready(
        self, info: HeadInfo, timeout_s: float, process: subprocess.Popen[bytes] | None = None
    ) -> bool:
        token = self.token
        deadline = time.monotonic() + timeout_s
        while not (
            dashboard_ready(info.dashboard_url, token)
            and head_node_registered(info.dashboard_url, token)
        ):
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"ray start exited with {process.returncode}; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    @staticmethod
    def _kill_group(pid: int, grace_s: float = 10.0) -> None:
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
