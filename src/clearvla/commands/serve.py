"""`clearvla serve`: a checkpoint behind OpenVLA's REST protocol and an openpi-style websocket (see clearvla.serve)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path

from clearvla.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="serve a checkpoint: OpenVLA-compatible REST + websocket, batched, with safety limits")
    p.add_argument("--checkpoint", required=True, type=Path, help="OpenVLA-format checkpoint directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only; 0.0.0.0 exposes the robot to the network)")
    p.add_argument("--port", type=int, default=8000)
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' (visible in `ps`; prefer --token-file)")
    auth.add_argument("--token-file", type=Path, default=None, help="read the bearer token from this file")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--quantize", choices=("none", "int8", "int4"), default="none",
                   help="weight quantisation of the LLM and projector linears (bitsandbytes; pip install 'clearvla[quantize]')")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--center-crop", action="store_true", help="centre crop of area 0.9 (models trained with crop augmentation)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 on small shared CPUs)")
    g = p.add_argument_group("batching")
    g.add_argument("--max-batch-size", type=int, default=8, help="most requests in one forward pass")
    g.add_argument("--max-wait-ms", type=float, default=5.0, help="longest a request waits for a batch to fill")
    g.add_argument("--max-queue", type=int, default=256, help="queued requests beyond this get 503")
    g = p.add_argument_group("robot safety")
    g.add_argument("--limits", type=Path, default=None, help="YAML/JSON file of per-robot limits (see README)")
    g.add_argument("--max-translation", type=float, default=None, help="metres per step (one robot named 'default')")
    g.add_argument("--max-rotation", type=float, default=None, help="radians per step (one robot named 'default')")
    g.add_argument("--workspace", type=float, nargs=6, default=None, metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                   help="end-effector box in metres (one robot named 'default'); requests must send proprio")
    g.add_argument("--deadline-ms", type=float, default=None, help="default deadline for requests that set none")
    g = p.add_argument_group("request limits")
    g.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body / websocket message")
    g.add_argument("--max-image-side", type=int, default=2048, help="largest image side in pixels")
    p.add_argument("--openvla-compat", action="store_true",
                   help="POST /act answers failures as OpenVLA's deploy.py does (HTTP 200, body \"error\", the reason in the "
                        "server log), ignores unknown fields and converts greyscale images to RGB; /v1/act stays strict")
    p.add_argument("--ask-threshold", type=float, default=None,
                   help="answer /v1/act and /ws with a clarifying question ({\"type\": \"ask\"}) when the model's uncertainty, "
                        "in [0, 1], is above this: the entropy of the first action tokens, or for chunk models the "
                        "chunk's spread over augmented views (OpenVLA's /act never asks)")
    p.set_defaults(func=run)


def safety_from_args(args: argparse.Namespace):
    """--limits FILE, or the --max-translation/--max-rotation/--workspace flags as one robot named 'default'."""
    from clearvla.serve.safety import RobotLimits, SafetyConfig

    flags = args.max_translation is not None or args.max_rotation is not None or args.workspace is not None
    if args.limits is not None and flags:
        raise ConfigError("give either --limits FILE or the --max-translation/--max-rotation/--workspace flags, not both")
    if args.limits is not None:
        return SafetyConfig.from_file(args.limits)
    if not flags:
        return SafetyConfig()
    box = args.workspace
    limits = RobotLimits(args.max_translation, args.max_rotation, None if box is None else tuple(box[:3]),
                         None if box is None else tuple(box[3:]))
    return SafetyConfig({"default": limits}, "default")


def read_token(args: argparse.Namespace) -> str | None:
    if args.token_file is None:
        token = args.token
    elif not args.token_file.is_file():
        raise ConfigError(f"token file {args.token_file} does not exist")
    else:
        token = args.token_file.read_text().strip()
    if token is not None and (len(token) < 8 or not token.isprintable() or not token.isascii() or " " in token):
        raise ConfigError("the token must be at least 8 printable ASCII characters without spaces")
    return token


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from clearvla.serve.app import ServeConfig, create_app, load_model
        from clearvla.serve.schema import RequestLimits
    except ImportError as e:
        raise ConfigError(f"the server needs the serve extra: pip install 'clearvla[serve]' ({e})") from None

    for name in ("max_batch_size", "max_queue", "max_image_side", "port"):
        if getattr(args, name) < (0 if name == "port" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be positive")
    if args.max_wait_ms < 0 or args.max_body_mb <= 0 or (args.deadline_ms is not None and args.deadline_ms <= 0):
        raise ConfigError("--max-wait-ms must be >= 0, --max-body-mb and --deadline-ms > 0")
    token = read_token(args)
    safety = safety_from_args(args)
    max_body = int(args.max_body_mb * 2**20)
    config = ServeConfig(
        token=token, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        deadline_ms=args.deadline_ms, center_crop=args.center_crop,
        limits=RequestLimits(max_body_bytes=max_body, max_image_side=args.max_image_side),
        safety=safety, model_name=args.checkpoint.resolve().name, ask_threshold=args.ask_threshold,
        openvla_compat=args.openvla_compat,
    )
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    vla = load_model(args.checkpoint, dtype=args.dtype, device=args.device, quantize=args.quantize)
    app = create_app(vla, config)
    if not _is_loopback(args.host) and token is None:
        log.warning("serving on %s without --token: anyone who can reach this port can drive the robot", args.host)
    print(f"clearvla serve: {args.checkpoint} on http://{args.host}:{args.port} (POST /act{' (OpenVLA compat)' if args.openvla_compat else ''}, /v1/act, WS /ws and /)"
          f"{'; bearer token required' if token else ''}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, ws_max_size=max_body, ws_per_message_deflate=False,
                log_level="info" if args.verbose else "warning", server_header=False, timeout_keep_alive=30)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
