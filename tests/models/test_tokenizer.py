"""Llama-2-style tokenizer: tiny build, OpenVLA prompt rule, checkpoint save/load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

from clearvla.errors import CheckpointError, ConfigError, InputError
from clearvla.models import tokenizer as tk

TEXTS = [
    "In: What action should the robot take to pick up the red block?\nOut:",
    "put the small blue bolt in the tray left of the washer",
    "hello world",
    "Grasp 123 things!! café über 中 😀",
    "  two  leading spaces",
    " one leading space",
    "tab\tand\nnewline\n",
    "trailing space ",
]


@pytest.fixture(scope="module")
def tokenizer():
    return tk.build_tiny_tokenizer()


@pytest.fixture(scope="module")
def sp(tokenizer):
    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(tokenizer.clearvla_sp_model)
    return processor


def _openvla_style_dir(directory: Path, sp_model: bytes, pad_id: int) -> Path:
    """What openvla-7b ships, minus tokenizer.json; written by hand so it does not depend on the module's writer."""
    special = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(i): {"content": text, **special}
            for i, text in ((0, "<unk>"), (1, "<s>"), (2, "</s>"), (pad_id, "<PAD>"))
        },
        "auto_map": {"AutoProcessor": "processing_prismatic.PrismaticProcessor"},
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": False,
        "model_max_length": 2048,
        "pad_token": "<PAD>",
        "padding_side": "right",
        "processor_class": "PrismaticProcessor",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.model").write_bytes(sp_model)
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return directory


def test_sp_model_is_byte_identical_across_builds_and_processes(tokenizer):
    first = tk._tiny_sp_model.__wrapped__(1024, 256)
    assert first == tk._tiny_sp_model.__wrapped__(1024, 256) == tokenizer.clearvla_sp_model
    code = "import sys; from clearvla.models.tokenizer import _tiny_sp_model as m; sys.stdout.buffer.write(m(1024,256))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout == first


def test_llama_layout(tokenizer, sp):
    assert tk.base_vocab_size(tokenizer) == sp.get_piece_size() == 1024
    assert len(tokenizer) == 1025
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.convert_ids_to_tokens([0, 1, 2]) == ["<unk>", "<s>", "</s>"]
    assert tokenizer.pad_token == "<PAD>" and tokenizer.pad_token_id == 1024
    assert tokenizer.convert_ids_to_tokens(13) == "<0x0A>"  # byte pieces follow the specials, as in Llama-2


def test_bos_prepended_and_no_eos(tokenizer):
    ids = tokenizer("pick up the cube")["input_ids"]
    assert ids[0] == 1 and ids.count(1) == 1 and 2 not in ids
    assert tokenizer("pick up the cube", add_special_tokens=False)["input_ids"] == ids[1:]


@pytest.mark.parametrize("text", TEXTS)
def test_matches_sentencepiece_and_round_trips(tokenizer, sp, text):
    ids = tokenizer(text)["input_ids"]
    assert ids == [1, *sp.encode(text)]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_dummy_prefix_and_byte_fallback(tokenizer):
    tokens = tokenizer.tokenize("In: hi\nOut:")
    assert tokens[0].startswith("▁") and not tokens[0].startswith("▁▁")
    assert "<0x0A>" in tokens
    assert tokenizer.tokenize("😀") == ["▁", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]


def test_action_ids_are_the_top_of_the_base_vocab_and_round_trip(tokenizer, sp):
    action_ids = tk.action_token_ids(tokenizer)
    assert action_ids == range(768, 1024)
    space_id = tokenizer.convert_tokens_to_ids("▁")
    for token_id in action_ids:
        piece = tokenizer.convert_ids_to_tokens(token_id)
        assert len(piece) == 1 and tokenizer.convert_tokens_to_ids(piece) == token_id
        text = tokenizer.decode([token_id])
        # The dummy prefix puts "▁" first, exactly as Llama-2 does for its top (rare-character) ids.
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == [space_id, token_id]
        assert sp.encode(text) == [space_id, token_id]
    ids = list(action_ids)
    assert tokenizer("Out:" + tokenizer.decode(ids), add_special_tokens=False)["input_ids"][-256:] == ids


def test_prompt_ids(tokenizer):
    ids = tk.prompt_ids(tokenizer, "Pick up the RED Block")
    text = "In: What action should the robot take to pick up the red block?\nOut:"
    space_id = tokenizer.convert_tokens_to_ids("▁")
    assert ids == [*tokenizer(text)["input_ids"], space_id]
    assert ids[0] == 1 and ids[-1] == space_id and ids[-2] != space_id
    assert tokenizer.convert_ids_to_tokens(ids[1:4]) == ["▁In", ":", "▁What"]
    with pytest.raises(InputError):
        tk.prompt_ids(tokenizer, None)


def test_prompt_ids_does_not_append_a_second_space(tokenizer):
    space_id = tokenizer.convert_tokens_to_ids("▁")

    class EndsWithSpace:  # a tokenizer whose prompt already ends with "▁": OpenVLA then appends nothing
        def __call__(self, text, add_special_tokens):
            return {"input_ids": [*tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"], space_id]}

        def convert_tokens_to_ids(self, token):
            return tokenizer.convert_tokens_to_ids(token)

    ids = tk.prompt_ids(EndsWithSpace(), "lift the nut")
    assert ids[-1] == space_id and ids[-2] != space_id


def test_save_load_round_trip(tokenizer, tmp_path):
    tk.save_tokenizer(tokenizer, tmp_path)
    names = {path.name for path in tmp_path.iterdir()}
    assert names == {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert (tmp_path / "tokenizer.model").read_bytes() == tokenizer.clearvla_sp_model
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "LlamaTokenizer" and config["add_bos_token"] and not config["add_eos_token"]
    assert config["added_tokens_decoder"]["1024"]["content"] == "<PAD>"
    loaded = tk.load_tokenizer(tmp_path)
    for text in TEXTS:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert tk.prompt_ids(loaded, "stack the cube") == tk.prompt_ids(tokenizer, "stack the cube")
    assert loaded.pad_token_id == 1024 and loaded.padding_side == "right" and loaded.model_max_length == 2048
    tk.save_tokenizer(loaded, tmp_path / "again")  # a loaded tokenizer saves the same flags (fine-tuned checkpoints)
    again = json.loads((tmp_path / "again" / "tokenizer_config.json").read_text())
    assert again["add_bos_token"] is True and again["add_eos_token"] is False


def test_openvla_style_dir_without_tokenizer_json_loads(tokenizer, sp, tmp_path):
    directory = _openvla_style_dir(tmp_path / "openvla", tokenizer.clearvla_sp_model, pad_id=1024)
    loaded = tk.load_tokenizer(directory)
    for text in TEXTS:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"] == [1, *sp.encode(text)]
    assert loaded.pad_token_id == 1024 and tk.base_vocab_size(loaded) == 1024
    assert tk.prompt_ids(loaded, "push the cyan ring") == tk.prompt_ids(tokenizer, "push the cyan ring")


def test_llama2_pipeline_replaces_a_transformers5_style_tokenizer_json(tokenizer, sp, tmp_path):
    tk.save_tokenizer(tokenizer, tmp_path)
    path = tmp_path / "tokenizer.json"
    data = json.loads(path.read_text())
    data["normalizer"] = None
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    path.write_text(json.dumps(data))
    loaded = tk.load_tokenizer(tmp_path)
    assert loaded(" lead")["input_ids"] == [1, *sp.encode(" lead")]
    # As in Llama-2's tokenizer.json under transformers 4.x, text after a special token gets the "▁" prefix again.
    assert loaded.tokenize("hi</s>world") == [*loaded.tokenize("hi"), "</s>", *loaded.tokenize("world")]


@pytest.mark.parametrize("name", ["tokenizer.model", "tokenizer_config.json"])
def test_missing_file_names_the_file_and_directory(tokenizer, tmp_path, name):
    tk.save_tokenizer(tokenizer, tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(CheckpointError, match=name) as info:
        tk.load_tokenizer(tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("name", ["tokenizer.model", "tokenizer_config.json", "tokenizer.json"])
@pytest.mark.parametrize("content", [b"", b"\x00garbage{"])
def test_corrupt_file_names_the_file(tokenizer, tmp_path, name, content):
    tk.save_tokenizer(tokenizer, tmp_path)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointError, match=name) as info:
        tk.load_tokenizer(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_pad_must_be_the_first_added_id(tokenizer, tmp_path):
    directory = _openvla_style_dir(tmp_path, tokenizer.clearvla_sp_model, pad_id=1024)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["pad_token"] = "</s>"
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="<PAD>"):
        tk.load_tokenizer(directory)


def test_other_sizes_and_bad_sizes():
    small = tk.build_tiny_tokenizer(base_vocab_size=800, n_action_tokens=64)
    assert tk.base_vocab_size(small) == 800 and small.pad_token_id == 800
    assert tk.action_token_ids(small, 64) == range(736, 800)
    with pytest.raises(ConfigError, match="base_vocab_size=300"):
        tk.build_tiny_tokenizer(base_vocab_size=300)
    with pytest.raises(ConfigError, match="n_action_tokens"):
        tk.build_tiny_tokenizer(n_action_tokens=0)


def test_each_build_is_a_fresh_object(tokenizer):
    other = tk.build_tiny_tokenizer()
    assert other is not tokenizer and other.clearvla_sp_model == tokenizer.clearvla_sp_model
