"""Paraphrases of a recorded episode's instruction: every train-suite instruction that asks for the same task on the
same part of the same scene ("lift the bolt", "pick up the blue bolt", "lift the large bolt left of the tray" ...).

Training on them (`TrainConfig.paraphrases`) shows one set of frames and actions under several ways of naming the
part, so a word the recorded instruction did not need (the kind where the colour sufficed) still has to pick that
part. The scene is re-drawn from the episode's metadata (suite, index: the simulator is deterministic), so any
dataset written by `clearvla sim record`, handover rounds included, can be paraphrased after the fact.
"""

from __future__ import annotations

from collections.abc import Callable

from clearvla.data.formats import EpisodeSource
from clearvla.errors import DataError
from clearvla.sim import language as lang
from clearvla.sim.sampling import EpisodeSetup
from clearvla.sim.suites import episode, setup
from clearvla.sim.vocab import TRAIN_TEMPLATES


def paraphrases(setup_: EpisodeSetup) -> list[str]:
    """Every instruction in the train suite's templates and words that names the same task, part, target and
    direction as `setup_`, other than `setup_.instruction` itself (sorted). Raises DataError for an ambiguous
    instruction: its paraphrases would name one part where it names several."""
    if len(setup_.candidates) > 1:
        raise DataError(f"{setup_.spec.suite} episode {setup_.spec.index}: {setup_.instruction!r} fits "
                        f"{len(setup_.candidates)} parts; an ambiguous instruction has no paraphrase that means "
                        "the same")
    objects = setup_.scene.objects
    target, direction = setup_.parse["target"], setup_.parse["direction"]
    target_ref = None if target is None else lang.Reference(target["kind"], target["colour"], target["size"])
    word = lang.train_wording
    target_text = lang.phrase(target_ref, objects, word) if target_ref else None
    direction_text = word("direction", direction) if direction else None
    focus = next(o for o in objects if o.name == setup_.intended_object)
    out = {
        lang.instruction(template, lang.phrase(ref, objects, word), target=target_text, direction=direction_text)
        for ref in lang.unique_references(focus, objects)
        for template in TRAIN_TEMPLATES[setup_.task.task]
    }
    out.discard(setup_.instruction)
    return sorted(out)


def dataset_paraphrases(source: EpisodeSource, progress: Callable[[], None] | None = None) -> dict[int, list[str]]:
    """Episode index -> paraphrases for every episode of a dataset recorded by `clearvla sim record`. Raises
    DataError naming the episode when its metadata lacks the suite and index, or its instruction is not the one
    the simulator gives that episode (edited after recording: its paraphrases would not match it)."""
    table = {}
    for i in range(len(source)):
        ep = source.load(i, images=False)
        meta = ep.metadata
        if "suite" not in meta or "index" not in meta:
            raise DataError(f"{source.path}: episode {i} has no suite and index in its metadata; paraphrases need "
                            "a dataset recorded by `clearvla sim record`")
        drawn = setup(episode(meta["suite"], int(meta["index"])), random_start=bool(meta.get("random_start", True)))
        if drawn.instruction != ep.instruction:
            raise DataError(f"{source.path}: episode {i}'s instruction {ep.instruction!r} is not the simulator's for "
                            f"{meta['suite']} episode {meta['index']} ({drawn.instruction!r})")
        table[i] = paraphrases(drawn)
        if progress is not None:
            progress()
    return table
