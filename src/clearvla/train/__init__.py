"""Training: fine-tuning modes, the loop, optimiser/schedule, resumable checkpoints, torchrun."""
