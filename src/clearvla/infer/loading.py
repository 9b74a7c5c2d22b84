"""The one way to get a closed-loop policy: a checkpoint loaded in this process (optionally quantised), or a running
`clearvla serve` acting through `client.RemotePolicy`. Evaluation workers and handover recording both load here.

`inspect_policy` reads what a policy needs (cameras, image size, state size, normalisation keys) without loading
weights, so a bad request fails once in the parent process, not in every worker; `load_policy` builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clearvla.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from clearvla.client import RemotePolicy
    from clearvla.infer.policy import VLAPolicy

SERVER_TIMEOUT_S = 60.0  # per request while acting: a busy server batches several workers' requests


@dataclass(frozen=True)
class PolicySource:
    """Where a policy comes from (exactly one of `checkpoint`, a directory, and `server`, a `clearvla serve` URL
    with its bearer `token`) and how it acts. `unnorm_key`: the norm_stats key (None: the only one);
    `execute`: actions of each chunk run open loop (chunk models; None = the model's `execute_actions`, else the
    whole chunk); `ensemble`: ACT's temporal ensemble with this weight decay instead (infer/policy.py).
    dtype, quantize (none | int8 | int4), action_tokens_only, center_crop and ensemble are a local checkpoint's:
    a server has its own, and asking for them with `server` raises ConfigError."""

    checkpoint: str | None = None
    server: str | None = None
    token: str | None = None
    unnorm_key: str | None = None
    center_crop: bool = False
    dtype: str = "float32"
    quantize: str = "none"
    action_tokens_only: bool = False
    execute: int | None = None
    ensemble: float | None = None

    def __post_init__(self) -> None:
        if (self.checkpoint is None) == (self.server is None):
            raise ConfigError("evaluate a checkpoint or a server URL: give exactly one")
        if self.server is None:
            return
        served = {"dtype": self.dtype != "float32", "quantize": self.quantize not in (None, "none"),
                  "action_tokens_only": self.action_tokens_only, "center_crop": self.center_crop}
        if any(served.values()):
            raise ConfigError(f"{', '.join(k for k, v in served.items() if v)}: set on the server (`clearvla serve`), not here")
        if self.ensemble is not None:
            raise ConfigError("the temporal ensemble needs a forward pass per step in this process; through a server "
                              "each answered chunk runs open loop (--execute K re-plans sooner)")

    @property
    def name(self) -> str:
        """The checkpoint directory or the server URL (reports name the policy by it)."""
        return str(self.checkpoint if self.server is None else self.server)


@dataclass(frozen=True)
class PolicyInputs:
    """What a policy reads: its cameras (config order; the first is the main view), square image size in pixels,
    robot-state size (0: none), and the normalisation keys it can un-normalise with."""

    cameras: tuple[str, ...]
    image_size: int
    proprio_dim: int
    norm_keys: tuple[str, ...]


def inspect_policy(source: PolicySource) -> PolicyInputs:
    """The inputs of `source`'s policy, from the checkpoint's JSON files or the server's /metadata (no weights are
    loaded). Raises CheckpointError for a directory that is not a checkpoint, ConfigError for a server that cannot
    be read, an `execute` beyond the served chunk, or an unknown quantisation mode, and MissingExtraError when
    quantising needs bitsandbytes."""
    if source.server is not None:
        from clearvla.client import PolicyClient

        try:
            with PolicyClient(source.server, token=source.token, timeout=30.0, retries=1) as client:
                metadata = client.metadata()
        except Exception as e:  # connection errors, ServerError (a wrong token): say which server, in one line
            raise ConfigError(f"cannot read {source.server}/metadata: {e}") from None
        chunk = int(metadata.get("chunk_size") or 1)
        if source.execute is not None and not 1 <= source.execute <= chunk:
            raise ConfigError(f"execute must be between 1 and the served model's chunk size {chunk}, got {source.execute}")
        return _served_inputs(metadata)
    if source.quantize not in (None, "none"):
        from clearvla.infer.quantize import check_mode, require_bitsandbytes

        check_mode(source.quantize)
        require_bitsandbytes()
    assert source.checkpoint is not None  # PolicySource holds exactly one
    return _checkpoint_inputs(Path(source.checkpoint))


def load_policy(source: PolicySource) -> tuple[VLAPolicy | RemotePolicy, PolicyInputs]:
    """(the policy, what it reads): `policy(obs, info) -> action [A] float32` with `reset()` and `last_action`.
    A checkpoint is loaded in this process with one torch thread (worker processes are the parallelism)."""
    if source.server is not None:
        from clearvla.client import PolicyClient, RemotePolicy

        client = PolicyClient(source.server, token=source.token, timeout=SERVER_TIMEOUT_S)
        remote = RemotePolicy(client, source.unnorm_key, execute=source.execute)
        return remote, _served_inputs(client.metadata())
    import torch

    from clearvla.infer.policy import VLAPolicy
    from clearvla.models.vla import VLA

    torch.set_num_threads(1)
    assert source.checkpoint is not None  # PolicySource holds exactly one
    vla = VLA.from_pretrained(source.checkpoint, dtype=getattr(torch, source.dtype), quantize=source.quantize)
    policy = VLAPolicy(vla, source.unnorm_key, source.center_crop, action_tokens_only=source.action_tokens_only,
                       execute=source.execute, ensemble=source.ensemble)
    inputs = PolicyInputs(tuple(vla.config.cameras), vla.processor.image_size, vla.config.proprio_dim,
                          tuple(sorted(vla.norm_stats)))
    return policy, inputs


def _served_inputs(metadata: dict[str, Any]) -> PolicyInputs:
    return PolicyInputs(tuple(metadata["cameras"]), int(metadata["image_size"]), int(metadata.get("proprio_dim") or 0),
                        tuple(metadata.get("norm_keys") or ()))


def _checkpoint_inputs(directory: Path) -> PolicyInputs:
    """PolicyInputs from config.json, preprocessor_config.json and dataset_statistics.json (which overrides the
    config's norm_stats, as VLA.from_pretrained reads them)."""
    from clearvla.models.checkpoint import CONFIG_FILE, read_settings

    if not (directory / CONFIG_FILE).is_file():
        raise CheckpointError(f"{directory} is not a checkpoint directory (no {CONFIG_FILE})")
    config, norm_stats, processor = read_settings(directory)
    return PolicyInputs(tuple(config.cameras), processor.image_size, config.proprio_dim, tuple(sorted(norm_stats)))
