"""Every benchmark's ``--help`` explains each option and its default, and names no internal issue numbers.

Each parser is obtained without running the benchmark: ``ArgumentParser.parse_args`` is replaced by
one that raises with the parser, then the module's ``main([])`` is called.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest

# Every benchmark command (a module with main(argv)), found, so a new one cannot be forgotten here.
MODULES = sorted(path.stem for path in (Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py")
                 if "def main(argv" in path.read_text())

ISSUE = re.compile(r"\bissues?\s*#?\d+", re.IGNORECASE)
DEFAULT = re.compile(r"\bdefault\b", re.IGNORECASE)  # the word: "defaults.json" does not count


class _Caught(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__("parser caught")
        self.parser = parser


def _parser(name: str, monkeypatch) -> argparse.ArgumentParser:
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except ImportError as error:  # an optional package the benchmark needs is missing
        pytest.skip(f"benchmarks.{name} needs a package that is not installed: {error}")

    def caught(self, args=None, namespace=None):
        raise _Caught(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", caught)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", caught)
    with pytest.raises(_Caught) as info:
        module.main([])
    return info.value.parser


def _parsers(parser: argparse.ArgumentParser, path: str):
    """The parser and every subparser beneath it, each with a name for messages."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


@pytest.mark.parametrize("name", MODULES)
def test_help_explains_every_option(name, monkeypatch):
    problems = []
    for where, parser in _parsers(_parser(name, monkeypatch), f"benchmarks.{name}"):
        text = parser.format_help()
        if ISSUE.search(text):
            problems.append(f"{where}: help names an issue number: {ISSUE.search(text).group(0)!r}")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = "/".join(action.option_strings) or action.dest
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                problems.append(f"{where}: {label} has no help")
                continue
            if isinstance(action, argparse._SubParsersAction):
                problems += [f"{where}: subcommand {choice.dest} has no help"
                             for choice in action._get_subactions() if not (choice.help or "").strip()]
                continue
            if not action.option_strings:
                continue
            if action.default is None or action.default is False:
                continue
            # The option's own help, as --help prints it, must state its default.
            line = parser._get_formatter()._expand_help(action)
            if not DEFAULT.search(line):
                problems.append(f"{where}: {label} does not show its default ({action.default!r})")
    assert not problems, "\n".join(problems)
