"""`clearvla demo --interactive`: the question reaches the user, the answer picks the part the VLA then acts on."""

from __future__ import annotations

import numpy as np

from clearvla.commands.interactive import run_interactive_episode
from clearvla.data.stats import compute_statistics
from clearvla.models.vla import VLA
from clearvla.sim import suites


def test_terminal_answer_resolves_the_instruction(tmp_path):
    rng = np.random.default_rng(0)
    stats = {"cell": compute_statistics(rng.normal(0, 0.01, (32, 7)), rng.normal(0, 1, (32, 13)), 2)}
    checkpoint = VLA.from_config("tiny", image_size=32, cameras=("image", "wrist_image"), proprio_dim=13,
                                 norm_stats=stats).save_pretrained(tmp_path / "ckpt")
    setup = suites.setup(suites.episode("ambiguous", 0))
    prompts, said = [], []

    def user(prompt: str) -> str:
        prompts.append(prompt)
        return "2"  # the second option, by number

    result = run_interactive_episode(checkpoint, index=0, ask=user, say=said.append, out_dir=tmp_path / "videos")
    assert len(prompts) == 1 and "  1. " in prompts[0] and "  2. " in prompts[0] and result.questions == 1
    assert result.instruction == setup.instruction and result.resolved_instruction != setup.instruction
    assert result.chosen_object in setup.candidates
    assert result.video is not None and result.video.is_file()
    assert said[0] == f"instruction: {setup.instruction!r}" and said[1] == f"acting on: {result.resolved_instruction!r}"
