"""The VLA model: vision backbones, projector, Llama LLM, image processor, presets and checkpoints."""
