"""What the local Ray head, and so every job on it, inherits from the control plane.

A job is a tenant's code: it must never see the control plane's secrets (its admin token,
its database URL, Ray's token as a variable) or anything else the server was started
with. The head's environment is therefore built from an allowlist, never copied from
``os.environ``: the system's basics, the locale, the math and GPU libraries' own knobs,
and Ray's own configuration variables (``RAY_*``, less the token). An operator adds more
names with ``RAYDC_JOB_ENV_ALLOW``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Names a job may inherit as they are.
ALLOWED_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "LANG", "LANGUAGE", "TMPDIR",
    "LD_LIBRARY_PATH", "VIRTUAL_ENV", "PYTHONHASHSEED", "PYTHONUNBUFFERED",
    # Thread pools and CPU kernels: OPENBLAS_* are set on some machines because older
    # OpenBLAS builds compute wrong results there.
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    # Accelerators.
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
    "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "TPU_VISIBLE_CHIPS",
    # Models load from packages, never from a hub at run time.
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
})  # fmt: skip
# Prefixes of names a job may inherit: the locale, NCCL's knobs, Ray's configuration.
ALLOWED_PREFIXES = ("LC_", "NCCL_", "RAY_")
# Never inherited, whatever the lists above say.
DENIED_NAMES = frozenset({"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"})
DENIED_PREFIXES = ("RAYDC_",)


def allowed(name: str, extra: Iterable[str] = ()) -> bool:
    if name in DENIED_NAMES or name.startswith(DENIED_PREFIXES):
        return False
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES) or name in set(extra)


def job_environment(source: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The part of ``source`` a job may see: allowlisted names only."""
    extra = frozenset(extra)
    return {name: value for name, value in source.items() if allowed(name, extra)}
