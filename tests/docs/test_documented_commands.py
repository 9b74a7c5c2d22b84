"""Every command the README and docs/ quote is checked against the code that would run it: `clearvla` commands
with the CLI's own parser (subcommands, every option, and a full parse when the line has no placeholders), `train`
options against TrainConfig's CLI, benchmark and script flags against the script's argparse source, and make targets
against the Makefile. A renamed flag then fails here, not in a user's terminal."""

from __future__ import annotations

import argparse
import functools
import re
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from clearvla.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
# docs/experiments/ is a dated record: its commands ran at the commits it names, not necessarily at this one.
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "experiments" not in p.parts)]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`((?:clearvla|make|torchrun|\.venv[\w-]*/bin/\w+|python|MUJOCO_GL=\w+) [^`]+)`")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(?:=[A-Z0-9_]+)?$|\.\.\.|[<>]")
PREFIX = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\.venv[\w-]*/bin/|\.\./\.venv/bin/)?")


@dataclass(frozen=True)
class Quoted:
    """One command as a page quotes it (continuations joined, comment dropped)."""

    page: str
    line: str
    complete: bool  # a line of a code block, not a mention inside a sentence (those may leave options out)

    def __str__(self) -> str:
        return f"{self.page}: {self.line}"


def _commands(text: str) -> list[tuple[str, bool]]:
    """(line, complete) for the shell lines of the page's bash blocks and its inline code spans that start with a
    command."""
    lines: list[tuple[str, bool]] = []
    for lang, body in FENCE.findall(text):
        if lang not in ("bash", "sh", ""):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        lines += [(ln, True) for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    lines += [(span, False) for span in INLINE.findall(text.replace("\n", " "))]
    return [(re.sub(r"\s+#\s.*$", "", ln).strip(), complete) for ln, complete in lines]


def _quoted() -> list[Quoted]:
    out = []
    for page in PAGES:
        for line, complete in _commands(page.read_text()):
            line = PREFIX.sub("", line)
            if re.match(r"(clearvla|make|torchrun|python|\S*benchmarks/|scripts/)\b", line):
                out.append(Quoted(str(page.relative_to(ROOT)), line, complete and "..." not in line))
    return out


def _tokens(line: str) -> list[str]:
    """Shell words with usage brackets opened and `a|b` alternatives reduced to the first."""
    line = line.replace("[", " ").replace("]", " ")
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    return [w.split("|")[0] if w.startswith("-") or "|" in w and " " not in w else w for w in words if w != "..."]


def _subparser(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The leaf parser the words select, and the path of subcommand names taken."""
    path: list[str] = []
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        nxt = next((w for w in words if not w.startswith("-")), None)
        if not subs or nxt is None or nxt not in subs[0].choices:
            return parser, path
        parser = subs[0].choices[nxt]
        path.append(nxt)
        words = words[words.index(nxt) + 1:]


@functools.cache
def _train_flags() -> set[str]:
    """Every option `clearvla train` takes: tyro's own parser of TrainConfig, plus the two the command reads."""
    import tyro

    from clearvla.commands.train import TrainConfig, tyro_markers

    with warnings.catch_warnings():  # get_parser is the one public way to see tyro's options without running it
        warnings.simplefilter("ignore", DeprecationWarning)
        parser = tyro.extras.get_parser(TrainConfig, config=tyro_markers())
    return {s for a in parser._actions for s in a.option_strings} | {"--config", "--strategy"}


def _check_clearvla(q: Quoted, words: list[str]) -> None:
    parser = build_parser()
    leaf, path = _subparser(parser, words)
    assert path, f"{q}: no such clearvla subcommand"
    flags = [w.split("=")[0] for w in words if w.startswith("--")]
    if path == ["train"]:
        unknown = [f for f in flags if f not in _train_flags()]
        assert not unknown, f"{q}: `clearvla train` has no option {unknown}"
        return
    known = {s for a in leaf._actions for s in a.option_strings}
    unknown = [f for f in flags if f not in known]
    assert not unknown, f"{q}: `clearvla {' '.join(path)}` has no option {unknown}"
    if q.complete and not any(PLACEHOLDER.search(w) for w in words):
        try:
            parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"{q}: the CLI's parser rejects this line")


def _check_script(q: Quoted, words: list[str]) -> None:
    script = next(w for w in words if w.endswith(".py"))
    path = ROOT / script if (ROOT / script).exists() else ROOT / "benchmarks" / script
    assert path.is_file(), f"{q}: no script {script}"
    source = path.read_text()
    for flag in (w.split("=")[0] for w in words if w.startswith("--")):
        assert f'"{flag}"' in source, f"{q}: {script} has no option {flag}"


def _check_make(q: Quoted, words: list[str]) -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for target in words[1:]:
        if re.fullmatch(r"[\w-]+", target):
            assert target in targets, f"{q}: the Makefile has no target {target}"


QUOTED = _quoted()


def test_pages_quote_commands() -> None:
    assert len(QUOTED) > 60, "the command extractor found almost nothing: has the docs' markup changed?"


@pytest.mark.parametrize("quoted", QUOTED, ids=str)
def test_documented_command(quoted: Quoted) -> None:
    words = _tokens(quoted.line)
    if words[0] == "torchrun":
        words = ["clearvla", *words[words.index("clearvla.cli") + 1:]]
    if words[0] == "clearvla":
        _check_clearvla(quoted, words[1:])
    elif words[0] == "make":
        _check_make(quoted, words)
    elif any(w.endswith(".py") for w in words):
        _check_script(quoted, words)
