"""Llama-2 SentencePiece tokenizers for OpenVLA: the tiny built-in one, checkpoint load/save, and the prompt rule."""

from __future__ import annotations

import functools
import io
import itertools
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
from tokenizers import AddedToken, normalizers
from transformers import LlamaTokenizer, PreTrainedTokenizerBase

from clearvla.errors import CheckpointError, ConfigError, InputError

PROMPT_TEMPLATE = "In: What action should the robot take to {}?\nOut:"
PAD_TOKEN = "<PAD>"
SP_MODEL_FILE = "tokenizer.model"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
FAST_TOKENIZER_FILE = "tokenizer.json"
_SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")
# Action pieces are single CJK ideographs from U+4E00 on, added as NORMAL pieces: the corpus is ASCII, so no trained
# piece contains them and no merge can absorb them, hence decode(id) -> encode gives the id back (after the "▁" the
# dummy prefix puts first), exactly like the rare characters at the top of Llama-2's vocabulary.
_ACTION_CHAR_START = 0x4E00
_MAX_ACTION_TOKENS = 0x9FFF - _ACTION_CHAR_START + 1

_VERBS = ("pick up", "lift", "grasp", "grab", "put", "place", "stack", "push", "slide", "move", "rotate", "flip",
          "insert", "remove", "drop", "hold", "fetch", "take")
_COLORS = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black", "gray", "cyan", "magenta",
           "pink", "brown")
_SIZES = ("", "small ", "large ", "big ", "tiny ")
_PARTS = ("block", "cube", "bolt", "cylinder", "nut", "ring", "washer", "plate")
_CONTAINERS = ("bin", "tray", "fixture", "box")
_RELATIONS = ("left of", "right of", "next to", "behind", "in front of")
_GENERIC = (
    "The quick brown fox jumps over the lazy dog.",
    "Please open the drawer and close the door when you are done.",
    "Wipe the table with a sponge, then turn on the faucet in the kitchen sink.",
    "Could you hand me the cup, the bottle and the spoon from the shelf?",
    "It is 3:45 pm on 12/07/2024; the line ran 1,250 cycles at 98.6% uptime.",
    "Fold the towel twice, hang it on the rack, and put the bowl in the microwave.",
    "Don't drop the glass! Carefully grip the handle and pour water into the pot.",
    "Sort the fruit: apples go into the basket, bananas go onto the plate.",
    "Slowly rotate the knob clockwise until the light turns green (about 90 degrees).",
    "Move the arm up, down, forward and backward; keep the gripper open.",
    "Where is the nearest charging station? Go there and wait for new instructions.",
    "Knock over the can, pick up the marker and write your name on the paper.",
    "Scientists, engineers and operators meet every morning to review safety reports.",
    "A robot should never harm a human or, through inaction, allow a human to come to harm.",
    "Unplug the cable, coil it neatly, and store it inside the top cabinet.",
    "We measured 0.5 kg, 7 mm and 64 units; results were better than expected.",
    "Open the laptop lid, press the power button, then type the password.",
    "Put the carrot, the eggplant and the corn into the pan on the stove.",
)


def _corpus() -> Iterator[str]:
    """Training sentences; none contains a newline, so "\\n" encodes via byte fallback as in Llama-2."""
    for verb, size, color, part in itertools.product(_VERBS, _SIZES, _COLORS, _PARTS):
        instruction = f"{verb} the {size}{color} {part}"
        yield PROMPT_TEMPLATE.format(instruction).split("\n")[0]
        yield instruction.capitalize() + "."
    for color, part, container, relation in itertools.product(_COLORS, _PARTS, _CONTAINERS, _RELATIONS):
        yield f"put the {color} {part} in the {container} {relation} the {part}s"
        yield f"pick up the nearest {part} {relation} the {color} {container} and stack it"
    for index, (a, b) in enumerate(itertools.permutations(_PARTS, 2)):
        yield f"step {index}: place {index % 10} {a}s on the {b}, then push {index % 7 + 2} {b}s to the left or right."
    yield "Out:"
    yield from _GENERIC


@functools.lru_cache(maxsize=8)
def _tiny_sp_model(base_vocab_size: int, n_action_tokens: int) -> bytes:
    """Llama-2-style SentencePiece model of `base_vocab_size` pieces, the top `n_action_tokens` for actions."""
    if not 1 <= n_action_tokens <= _MAX_ACTION_TOKENS:
        raise ConfigError(f"n_action_tokens must be in [1, {_MAX_ACTION_TOKENS}], got {n_action_tokens}")
    writer = io.BytesIO()
    try:
        # Llama-2's trainer and normalizer spec; one thread and a fixed seed make the bytes reproducible.
        spm.set_random_generator_seed(0)
        spm.SentencePieceTrainer.train(
            sentence_iterator=_corpus(), model_writer=writer, vocab_size=base_vocab_size - n_action_tokens,
            model_type="bpe", byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, split_digits=True,
            add_dummy_prefix=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True, character_coverage=1.0, max_sentencepiece_length=16,
            num_threads=1, minloglevel=2,
        )
    except RuntimeError as err:  # e.g. "Vocabulary size too high (N). Please set it to a value <= M."
        raise ConfigError(
            f"cannot train the tiny tokenizer with base_vocab_size={base_vocab_size}, "
            f"n_action_tokens={n_action_tokens}: {err}"
        ) from None
    proto = sentencepiece_model_pb2.ModelProto.FromString(writer.getvalue())
    score = proto.pieces[-1].score
    for index in range(n_action_tokens):
        proto.pieces.add(piece=chr(_ACTION_CHAR_START + index), score=score - 1 - index)
    proto.trainer_spec.vocab_size = base_vocab_size
    return proto.SerializeToString()


def _token_entry(token: AddedToken) -> dict:
    return {key: getattr(token, key) for key in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}


def _openvla_config(pad_id: int) -> dict:
    """tokenizer_config.json as openvla-7b ships it (readable by transformers 4.x and 5.x)."""
    specials = ((0, "<unk>"), (1, "<s>"), (2, "</s>"), (pad_id, PAD_TOKEN))
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(i): _token_entry(AddedToken(text, special=True, normalized=False)) for i, text in specials
        },
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": False,
        "model_max_length": 2048,
        "pad_token": PAD_TOKEN,
        "padding_side": "right",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }


def _write_files(directory: Path, sp_model: bytes, config: dict) -> None:
    """Write tokenizer.model, tokenizer_config.json and special_tokens_map.json (tokenizer.json is the caller's)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SP_MODEL_FILE).write_bytes(sp_model)
    # Top-level keys sorted as transformers writes them; added_tokens_decoder keeps its id order.
    text = json.dumps(dict(sorted(config.items())), indent=2, ensure_ascii=False)
    (directory / CONFIG_FILE).write_text(text + "\n")
    special = {key: config[key] for key in _SPECIAL_KEYS if config.get(key)}
    (directory / SPECIAL_TOKENS_FILE).write_text(json.dumps(special, indent=2, sort_keys=True) + "\n")


def build_tiny_tokenizer(base_vocab_size: int = 1024, n_action_tokens: int = 256) -> PreTrainedTokenizerBase:
    """Llama-2-style tokenizer trained on a built-in robot-instruction corpus, loaded exactly as a checkpoint is.

    Ids 0/1/2 are <unk>/<s>/</s>; ids base_vocab_size - n_action_tokens .. base_vocab_size - 1 are the action
    pieces; `<PAD>` is the added token base_vocab_size. Equal arguments give a byte-identical tokenizer.model.
    Training is cached in-process; each call returns a new tokenizer object (about 10 ms), so callers may mutate it.
    """
    sp_model = _tiny_sp_model(base_vocab_size, n_action_tokens)
    with tempfile.TemporaryDirectory(prefix="clearvla-tokenizer-") as tmp:
        _write_files(Path(tmp), sp_model, _openvla_config(pad_id=base_vocab_size))
        return load_tokenizer(tmp)


def _read(directory: Path, name: str) -> bytes:
    try:
        return (directory / name).read_bytes()
    except OSError as err:
        message = f"tokenizer file {name} is missing or unreadable in {directory} ({err.strerror})"
        raise CheckpointError(message) from None


def _read_json(directory: Path, name: str) -> dict:
    try:
        parsed = json.loads(_read(directory, name))
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise CheckpointError(f"tokenizer file {name} in {directory} is not a JSON object")
    return parsed


def _read_sp_model(directory: Path) -> tuple[bytes, sentencepiece_model_pb2.ModelProto]:
    sp_model = _read(directory, SP_MODEL_FILE)
    try:
        spm.SentencePieceProcessor().LoadFromSerializedProto(sp_model)  # also rejects an empty file
    except RuntimeError:
        raise CheckpointError(f"tokenizer file {SP_MODEL_FILE} in {directory} is not a SentencePiece model") from None
    proto = sentencepiece_model_pb2.ModelProto.FromString(sp_model)
    llama_like = (
        proto.normalizer_spec.name == "identity"
        and proto.trainer_spec.model_type == proto.trainer_spec.BPE
        and any(piece.piece == "▁" for piece in proto.pieces)
    )
    if not llama_like:
        raise CheckpointError(
            f"tokenizer file {SP_MODEL_FILE} in {directory} is not a Llama-style model "
            '(needs BPE, identity normalization and a "▁" piece)'
        )
    return sp_model, proto


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerBase:
    """Load a checkpoint's tokenizer offline, as OpenVLA tokenizes under transformers 4.x.

    Needs tokenizer.model and tokenizer_config.json (tokenizer_class LlamaTokenizer[Fast]); tokenizer.json and
    special_tokens_map.json are used when present. `<PAD>` must be the first added id. Raises CheckpointError
    naming the directory and the bad file.
    """
    directory = Path(directory)
    sp_model, proto = _read_sp_model(directory)
    config = _read_json(directory, CONFIG_FILE)
    for optional in (FAST_TOKENIZER_FILE, SPECIAL_TOKENS_FILE):
        if (directory / optional).exists():
            _read_json(directory, optional)
    if config.get("tokenizer_class", "LlamaTokenizer") not in ("LlamaTokenizer", "LlamaTokenizerFast"):
        raise CheckpointError(
            f"tokenizer file {CONFIG_FILE} in {directory} names tokenizer_class {config['tokenizer_class']!r}; "
            "only LlamaTokenizer and LlamaTokenizerFast are supported"
        )
    try:
        # A fixed class, never AutoTokenizer: auto_map entries and remote code are never looked at.
        tokenizer = LlamaTokenizer.from_pretrained(directory, local_files_only=True)
    except Exception as err:  # transformers raises OSError, ValueError, KeyError, ... for broken files
        raise CheckpointError(f"cannot load the tokenizer files in {directory}: {err}") from None
    # transformers 5 rebuilds Llama's pipeline as Metaspace(prepend_scheme="first"), which skips the "▁" prefix when
    # the text already starts with a space. SentencePiece, and Llama-2's tokenizer.json that OpenVLA ran under
    # transformers 4.x, always prepend it: restore that pipeline so every input gets the reference ids.
    prefix = [normalizers.Prepend("▁")] if proto.normalizer_spec.add_dummy_prefix else []
    tokenizer.backend_tokenizer.normalizer = normalizers.Sequence([*prefix, normalizers.Replace(" ", "▁")])
    tokenizer.backend_tokenizer.pre_tokenizer = None
    tokenizer.clearvla_sp_model = sp_model  # what save_tokenizer writes back as tokenizer.model
    if base_vocab_size(tokenizer) != len(proto.pieces):
        raise CheckpointError(
            f"tokenizer files in {directory} disagree: {FAST_TOKENIZER_FILE} has {base_vocab_size(tokenizer)} base "
            f"tokens, {SP_MODEL_FILE} has {len(proto.pieces)}"
        )
    if tokenizer.pad_token != PAD_TOKEN or tokenizer.pad_token_id != len(proto.pieces):
        raise CheckpointError(
            f"tokenizer in {directory} has pad token {tokenizer.pad_token!r} (id {tokenizer.pad_token_id}); "
            f"OpenVLA needs {PAD_TOKEN!r} as the first added id, {len(proto.pieces)}"
        )
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> None:
    """Write tokenizer.model, tokenizer.json, tokenizer_config.json and special_tokens_map.json into `directory`.

    `tokenizer` must come from build_tiny_tokenizer or load_tokenizer, which keep the SentencePiece model bytes.
    """
    sp_model = getattr(tokenizer, "clearvla_sp_model", None)
    if sp_model is None:
        raise CheckpointError(
            "cannot save this tokenizer: it carries no SentencePiece model; use one from "
            "build_tiny_tokenizer or load_tokenizer"
        )
    config = {
        **_openvla_config(pad_id=base_vocab_size(tokenizer)),
        **{key: str(value) for key, value in tokenizer.special_tokens_map.items() if key in _SPECIAL_KEYS},
        # What the tokenizer does, not its flags: after loading, transformers 5 reports add_bos_token False for a
        # tokenizer whose tokenizer.json post-processor still adds BOS, so a re-saved checkpoint would drift.
        "add_bos_token": _adds(tokenizer, tokenizer.bos_token_id, first=True),
        "add_eos_token": _adds(tokenizer, tokenizer.eos_token_id, first=False),
        "added_tokens_decoder": {str(i): _token_entry(t) for i, t in sorted(tokenizer.added_tokens_decoder.items())},
        "model_max_length": tokenizer.model_max_length,
        "padding_side": tokenizer.padding_side,
    }
    directory = Path(directory)
    _write_files(directory, sp_model, config)
    tokenizer.backend_tokenizer.save(str(directory / FAST_TOKENIZER_FILE))


def _adds(tokenizer: PreTrainedTokenizerBase, token_id: int | None, *, first: bool) -> bool:
    """Whether encoding with special tokens puts `token_id` first (or last) around plain text."""
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return token_id is not None and ids[0 if first else -1] == token_id


def base_vocab_size(tokenizer: PreTrainedTokenizerBase) -> int:
    """Vocabulary size without added tokens (32000 for Llama-2): the V of OpenVLA's action ids V-256 .. V-1."""
    return tokenizer.vocab_size


def action_token_ids(tokenizer: PreTrainedTokenizerBase, n_action_tokens: int = 256) -> range:
    """The action ids: the top `n_action_tokens` ids of the base vocabulary, V - n .. V - 1."""
    size = base_vocab_size(tokenizer)
    return range(size - n_action_tokens, size)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, instruction: str) -> list[int]:
    """OpenVLA's prompt: BOS + ids of PROMPT_TEMPLATE with the lower-cased instruction, then the id of "▁" unless the
    ids already end with it (OpenVLA appends 29871 for Llama-2)."""
    if not isinstance(instruction, str):
        raise InputError(f"instruction must be a str, got {type(instruction).__name__}")
    ids = list(tokenizer(PROMPT_TEMPLATE.format(instruction.lower()), add_special_tokens=True)["input_ids"])
    space_id = tokenizer.convert_tokens_to_ids("▁")
    if ids[-1] != space_id:
        ids.append(space_id)
    return ids
