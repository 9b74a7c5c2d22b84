"""The policy server (`clearvla serve`): OpenVLA-compatible REST, an openpi-style msgpack websocket, dynamic
batching and per-robot safety limits.

Modules: `codecs` (json_numpy and msgpack-numpy wire formats, strict decoders), `schema` (request validation and
response rendering), `safety` (action limits, workspace box, deadlines), `batcher` (dynamic batching, inference
in a worker thread) and `app` (the FastAPI app factory and model loading). The server needs the `serve` extra
(`pip install clearvla[serve]`); the robot-side client is `clearvla.client`, which needs none of this.

Nothing is imported here, so `import clearvla.serve.codecs` costs neither FastAPI nor torch.
"""
