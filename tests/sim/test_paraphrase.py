"""Paraphrases of recorded instructions: each names the same task, part, target and direction as the recording's,
read back by the clarifier's own parser; ambiguous or edited instructions are refused; the CLI writes a file the
trainer loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clearvla.cli import main
from clearvla.clarify.ground import ground_target, matching
from clearvla.clarify.parse import parse
from clearvla.data.episode import Episode
from clearvla.data.paraphrases import load_paraphrases
from clearvla.errors import DataError
from clearvla.sim.paraphrase import dataset_paraphrases, paraphrases
from clearvla.sim.suites import episode, setup


def test_every_paraphrase_names_the_recorded_part_target_and_direction():
    words_used = set()
    for index in range(60):
        drawn = setup(episode("train", index))
        objects, said = drawn.scene.objects, parse(drawn.instruction)
        found = paraphrases(drawn)
        assert found and drawn.instruction not in found and found == sorted(set(found))
        for text in found:
            heard = parse(text)
            assert heard.task == drawn.task.task and heard.direction == said.direction, text
            assert matching(heard.object, objects) == [drawn.intended_object], text
            assert ground_target(heard, objects) == ground_target(said, objects), text
            words_used |= {k for k, v in heard.object.to_dict().items() if v}
    assert words_used == {"kind", "colour", "size", "relation", "anchor"}  # every way of naming a part occurs


def test_an_ambiguous_instruction_has_no_paraphrase():
    drawn = setup(episode("ambiguous", 0))
    with pytest.raises(DataError, match="ambiguous instruction"):
        paraphrases(drawn)


class _Source:
    """Two recorded-looking episodes of the train suite; `instruction` overrides the second one's."""

    def __init__(self, instruction: str | None = None) -> None:
        self.path, self.name, self.format, self.instruction = Path("fake"), "fake", "lerobot", instruction

    def __len__(self) -> int:
        return 2

    def load(self, index: int, **_) -> Episode:
        text = setup(episode("train", 10 + index)).instruction
        if index == 1 and self.instruction is not None:
            text = self.instruction
        return Episode({}, np.zeros((3, 7), np.float32), text, metadata={"suite": "train", "index": 10 + index})


def test_a_dataset_is_paraphrased_from_its_episode_metadata():
    assert dataset_paraphrases(_Source()) == {i: paraphrases(setup(episode("train", 10 + i))) for i in range(2)}
    with pytest.raises(DataError, match="episode 1's instruction 'lift the thing' is not the simulator's"):
        dataset_paraphrases(_Source("lift the thing"))
    source = _Source()
    source.load = lambda index, **_: Episode({}, np.zeros((3, 7), np.float32), "lift it", metadata={})
    with pytest.raises(DataError, match="episode 0 has no suite and index"):
        dataset_paraphrases(source)


def test_cli_writes_a_file_the_trainer_loads_and_never_into_the_dataset(tmp_path):
    demos = tmp_path / "demos"
    assert main(["sim", "record", "--episodes", "2", "--start", "3", "--out", str(demos), "--image-size", "32",
                 "--no-wrist"]) == 0
    out = tmp_path / "demos_paraphrases.json"
    assert main(["sim", "paraphrase", "--dataset", str(demos), "--out", str(out)]) == 0
    table = load_paraphrases(out, "demos", episodes=2)
    from clearvla.data.formats.lerobot import read_lerobot

    for i, ep in enumerate(read_lerobot(demos)):
        assert table[i] == tuple(paraphrases(setup(episode("train", ep.metadata["index"]))))
    before = sorted(p.relative_to(demos) for p in demos.rglob("*"))
    assert main(["sim", "paraphrase", "--dataset", str(demos), "--out", str(demos / "p.json")]) == 2
    assert sorted(p.relative_to(demos) for p in demos.rglob("*")) == before
