"""Clarifying in a terminal: `clearvla demo --interactive`. The simulator draws an episode (ambiguous ones by
default), the clarifier asks you which part you mean when the instruction fits several, and the VLA then plays
the episode with the resolved instruction; a video of the rollout is written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clearvla.clarify.ask import Ask
from clearvla.clarify.clarifier import Clarifier
from clearvla.clarify.scoring import VLAScorer


@dataclass(frozen=True)
class InteractiveResult:
    """One interactive episode: what was said, asked and done."""

    instruction: str
    resolved_instruction: str
    questions: int
    intended_object: str
    chosen_object: str | None
    success: bool
    video: Path | None


def run_interactive_episode(
    checkpoint: str | Path,
    *,
    suite: str = "ambiguous",
    index: int = 0,
    ask: Callable[[str], str] = input,
    say: Callable[[str], None] = print,
    out_dir: Path | None = None,
    max_turns: int = 2,
) -> InteractiveResult:
    """Play episode `index` of `suite`, asking `ask(prompt) -> answer` (the terminal by default) when unclear."""
    from clearvla.eval.rollout import overlay
    from clearvla.infer.policy import VLAPolicy
    from clearvla.models.vla import VLA
    from clearvla.sim import suites
    from clearvla.sim.env import WorkcellEnv, policy_cameras
    from clearvla.sim.rollout import run_episode
    from clearvla.sim.video import write_video

    vla = VLA.from_pretrained(checkpoint).eval()
    env = WorkcellEnv(suite, image_size=vla.processor.image_size, cameras=policy_cameras(vla.config.cameras))
    try:
        spec = suites.episode(suite, index)
        obs, info = env.reset(options={"episode": spec})
        say(f"instruction: {info['instruction']!r}")
        dialogue = Clarifier(VLAScorer(vla), max_turns=max_turns).start(obs, info["instruction"], info)
        while isinstance(dialogue.decision, Ask):
            question = dialogue.decision
            lines = [question.question] + [f"  {i + 1}. {option}" for i, option in enumerate(question.options)]
            answer = ask("\n".join(lines) + "\nyour answer (number or words): ").strip()
            dialogue.reply(int(answer) - 1 if answer.isdigit() else answer)
        act = dialogue.decision
        say(f"acting on: {act.instruction!r}" + ("" if act.resolved else f" (not fully resolved: {act.reason})"))
        policy = VLAPolicy(vla, instruction=act.instruction)
        frames = []
        rollout = run_episode(env, policy, spec, record=False,
                              on_step=lambda o, i: frames.append(overlay(o["image"], act.instruction, policy.last_action)))
        video = None
        if out_dir is not None:
            outcome = "success" if rollout.success else "failure"
            video = write_video(frames, Path(out_dir) / f"interactive_{suite}_{index:04d}_{outcome}.mp4", fps=10)
        say(f"{'success' if rollout.success else 'failure'} in {rollout.final_info['step']} steps"
            + (f"; video: {video}" if video else ""))
        return InteractiveResult(info["instruction"], act.instruction, dialogue.questions, info["intended_object"],
                                 act.object, rollout.success, video)
    finally:
        env.close()
