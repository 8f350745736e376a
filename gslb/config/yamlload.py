"""Read a YAML file into plain data, turning every YAML error into one Problem line.

PyYAML silently keeps the last of two equal keys; an operator who writes `www:` twice almost
certainly made a mistake, so duplicate keys are reported instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gslb.config.problems import Problems


# libyaml's parser when PyYAML was built with it: about 5x faster on big zones.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_Base):  # type: ignore[valid-type, misc]
    pass


class DuplicateKeyError(yaml.MarkedYAMLError):
    pass


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in mapping:
            raise DuplicateKeyError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# YAML 1.1 reads `on`/`off`/`yes`/`no` as booleans and 010 as octal, which turns record names and
# TXT values into surprises; keep YAML's core types but only the unambiguous true/false.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(path: Path, problems: Problems) -> Any:
    """The document in `path`, or None with a problem added when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add("", "file not found")
        return None
    except (OSError, UnicodeDecodeError) as error:
        problems.add("", f"cannot read: {error}")
        return None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        what = error.problem or error.context or "invalid YAML"
        problems.add("", f"YAML error at {where}: {what}")
    except yaml.YAMLError as error:
        problems.add("", f"YAML error: {str(error).splitlines()[0]}")
    return None
