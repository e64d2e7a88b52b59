"""Params files: reading them (one line for every mistake), `base:` inheritance, `--set` overrides, and their
resolution into a validated `RunConfig`. The run-folder lifecycle that executes them is `runner.py`."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..config import RunConfig

ROOT = Path(__file__).resolve().parents[2]  # the repository, in a clone or an editable install
PARAMS_DIR = ROOT / "params"
ORIGINAL_VARIANTS = ("v1_buggy_reward", "v2_balanced", "v3_balanced_kl")  # the original experiment's versions 1-3


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's core schema for plain scalars, the reading a user expects: `1e-4` is a
    float (YAML 1.1 made it a string), `017` is 17 (not octal 15), and yes/no/on/off stay strings. Aliases
    (`*name`) are refused: a parameter is one plain value, and a few hundred bytes of nested aliases expand to
    gigabytes (and to an error message of as many)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in a parameter: write the value out", mark
            )
        return super().compose_node(parent, index)


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag.rsplit(":", 1)[-1] not in ("bool", "int", "float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                   list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def _yaml12_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """Decimal unless written 0o (octal) or 0x (hex): YAML 1.2 reads a leading zero as decimal."""
    text = loader.construct_scalar(node)
    return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _yaml12_int)


def _shown(value: str, limit: int = 60) -> str:
    """A value for an error message, cut to `limit` characters (a value can be huge)."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"... ({len(value)} characters)"


def parse_overrides(items: list[str]) -> dict:
    """`key=value` strings; values are read as YAML 1.2 (`beta=0.1`, `learning_rate=1e-4`, `class_weights=false`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {_shown(item)}")
        try:
            out[key.strip()] = yaml.load(value, Loader=Yaml12Loader)
        except (yaml.YAMLError, RecursionError) as err:  # nested too deep for the parser: also not a value
            problem = getattr(err, "problem", None) or "not a YAML value"
            raise ValueError(f"{key.strip()}: cannot read {_shown(value)} as a value ({problem}); quote text, "
                             "e.g. --set model='my/model'") from None
    return out


class _UniqueKeyLoader(Yaml12Loader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""


    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"parameter {key!r} is given twice (keep one)", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path) -> dict:
    """A params file as a dict; empty files, repeated keys and YAML errors fail in one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path} (see the params/ folder for examples)")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{where}: invalid params file: {problem}") from None
    if data is None:
        raise ValueError(
            f"{path} is empty: state at least one parameter (e.g. `num_steps: 100`); the defaults are in "
            "pokerlib/config.py"
        )
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of parameter: value")
    return data


def params_values(params_file: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A params file's values over those of the file its `base:` key names (relative to it), recursively."""
    path = Path(params_file).resolve()
    if path in _seen:
        raise ValueError(f"params files name each other as base in a cycle: {' -> '.join(map(str, _seen + (path,)))}")
    values = read_params(path)
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ValueError(f"{path}: base must be the name of another params file, e.g. base: v2_balanced.yaml")
    return {**params_values(path.parent / base, _seen + (path,)), **values}


def resolve_config(params_file: str | Path, overrides: dict | None = None, seed: int | None = None) -> RunConfig:
    """The validated configuration of a run: params file (over its base), then overrides, then --seed."""
    values = {**params_values(params_file), **(overrides or {})}
    if seed is not None:
        values["seed"] = seed
    return RunConfig.from_dict(values)
