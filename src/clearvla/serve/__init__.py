"""The policy server (`clearvla serve`): OpenVLA-compatible REST, an openpi-style msgpack websocket, dynamic
batching and per-robot safety limits.

Modules: `codecs` (json_numpy and msgpack-numpy wire formats, strict decoders), `aliases` (openpi's observation
layouts as request aliases), `images` (HWC/CHW, uint8/float -> uint8 RGB), `schema` (request validation),
`responses` (the answer on each wire), `safety` (action limits, workspace box, deadlines), `batcher` (dynamic
batching, inference in a worker thread), `service` (request -> action, transport-free), `websocket` (openpi's
protocol) and `app` (the FastAPI app factory, REST routes and model loading). The server needs the `serve` extra
(`pip install clearvla[serve]`); the robot-side client is `clearvla.client`, which needs none of this.

Nothing is imported here, so `import clearvla.serve.codecs` costs neither FastAPI nor torch.
"""
