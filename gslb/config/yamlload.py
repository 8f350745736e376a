"""Read a YAML file into plain data, turning every YAML error into one Problem line.

PyYAML silently keeps the last of two equal keys; an operator who writes `www:` twice almost
certainly made a mistake, so duplicate keys are reported instead.

A zone file is input that may come from anywhere, so reading it is bounded: the file's size
(gslb/config/files.py), the nesting depth (libyaml's composer recurses in C and crashes the process
on a few hundred kilobytes of `[`), and how far aliases may repeat what the file spells out (a
478-byte "billion laughs" under `ttl:` once expanded to a 34.7 MB error message).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent, StreamEndEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gslb.config.files import DEFAULT_MAX_BYTES, FileRefused, FileTooLarge, read_regular_file
from gslb.config.problems import Problems, clip

# libyaml's parser when PyYAML was built with it: about 5x faster on big zones.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Far deeper than any zone or settings file (a GSLB record's weighted endpoint is 6 levels down).
MAX_DEPTH = 64
# Aliases may repeat at most this many nodes, or as many as the file spells out up to there when
# that is more: a shared block reused across a zone is fine, exponential growth is not.
ALIAS_NODES = 10_000
MAX_INT_BITS = 128

_SEQUENCE_TAG = yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG
_MAPPING_TAG = yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG


class DuplicateKeyError(yaml.MarkedYAMLError):
    pass


class LimitError(yaml.MarkedYAMLError):
    """A document beyond MAX_DEPTH or ALIAS_NODES."""


class _StrictLoader(_Base):  # type: ignore[valid-type, misc]
    def get_single_node(self) -> Node | None:
        """PyYAML's composer, without recursion and within the limits above. libyaml still scans
        and parses (in C, iteratively); this builds the node graph from its events."""
        self.get_event()  # StreamStartEvent
        node = None
        if not self.check_event(StreamEndEvent):
            self.get_event()  # DocumentStartEvent
            node = self._compose_document()
            self.get_event()  # DocumentEndEvent
            if not self.check_event(StreamEndEvent):
                event = self.get_event()
                raise yaml.composer.ComposerError(
                    None, None, "a second YAML document starts here; the file must hold one", event.start_mark)
        self.get_event()  # StreamEndEvent
        return node

    def _compose_document(self) -> Node:
        anchors: dict[str, Node] = {}
        sizes: dict[int, int] = {}  # id(anchored node) -> nodes it stands for, aliases expanded
        spelled = 0  # nodes written out in the file
        repeated = 0  # nodes that aliases stand for
        # Open collections: [node, is mapping, pending mapping key, anchor, spelled and repeated
        # when it opened]; an anchored collection's size is what both counters grew by inside it.
        stack: list[list[Any]] = []
        get_event = self.get_event
        resolve = self.resolve
        # Zones repeat the same keys and words (type, value, A, pools) thousands of times:
        # remembering their tags pays for building the graph here rather than in C.
        tags: dict[tuple[str, tuple[bool, bool]], str] = {}
        while True:
            event = get_event()
            kind = event.__class__
            if kind is ScalarEvent:
                tag = event.tag
                if tag is None or tag == "!":
                    key = (event.value, event.implicit)
                    tag = tags.get(key)
                    if tag is None:
                        tag = tags[key] = resolve(ScalarNode, event.value, event.implicit)
                node: Node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
                spelled += 1
                if event.anchor is not None:
                    self._anchor(anchors, event)
                    anchors[event.anchor] = node
                    sizes[id(node)] = 1
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if len(stack) >= MAX_DEPTH:
                    raise LimitError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
                is_mapping = kind is MappingStartEvent
                tag = event.tag
                if tag is None or tag == "!":
                    tag = _MAPPING_TAG if is_mapping else _SEQUENCE_TAG
                node = (MappingNode if is_mapping else SequenceNode)(
                    tag, [], event.start_mark, None, flow_style=event.flow_style)
                spelled += 1
                if event.anchor is not None:
                    self._anchor(anchors, event)
                    anchors[event.anchor] = node
                    sizes[id(node)] = 0  # open
                stack.append([node, is_mapping, None, event.anchor, spelled, repeated])
                continue
            elif kind is AliasEvent:
                target = anchors.get(event.anchor)
                if target is None:
                    raise yaml.composer.ComposerError(
                        None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
                size = sizes[id(target)]
                if size == 0:  # still open: the alias is inside the collection it names
                    raise LimitError(None, None, f"alias *{event.anchor} is inside the collection it refers "
                                     "to (a loop); write the values out", event.start_mark)
                repeated += size
                if repeated > ALIAS_NODES and repeated > spelled:
                    raise LimitError(None, None, f"aliases here repeat more than {max(ALIAS_NODES, spelled):,} "
                                     "nodes (an alias bomb?); write the values out or use fewer aliases",
                                     event.start_mark)
                node = target
            else:  # SequenceEndEvent or MappingEndEvent
                node, _is_mapping, _pending, anchor, spelled_then, repeated_then = stack.pop()
                node.end_mark = event.end_mark
                if anchor is not None:
                    sizes[id(node)] = 1 + spelled - spelled_then + repeated - repeated_then
            if not stack:
                return node
            parent = stack[-1]
            if parent[1]:
                if parent[2] is None:
                    parent[2] = node
                else:
                    parent[0].value.append((parent[2], node))
                    parent[2] = None
            else:
                parent[0].value.append(node)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """PyYAML's, with a value its constructor cannot read reported at that value: an explicit
        tag (`!!float origin`, `!!int` on nothing, `!!bool x`, `!!timestamp x`, `!!map x`) makes
        PyYAML raise ValueError, IndexError, KeyError or AttributeError rather than a YAMLError."""
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError):
            tag = str(node.tag)
            short = "!!" + tag.rpartition(":")[2] if tag.startswith("tag:yaml.org,2002:") else tag
            raise yaml.constructor.ConstructorError(
                None, None, f"this value cannot be read as {clip(short, 40)}; remove the tag or fix the value",
                node.start_mark) from None

    @staticmethod
    def _anchor(anchors: dict[str, Node], event: Any) -> None:
        if event.anchor in anchors:
            first = anchors[event.anchor].start_mark.line + 1
            raise yaml.composer.ComposerError(
                None, None, f"anchor &{event.anchor} is defined twice (first at line {first}); rename one",
                event.start_mark)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
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


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    """No setting needs more than 64 bits; a longer number is a mistake, and one beyond 4300
    digits would make Python raise ValueError wherever it is printed in a message."""
    value: int | None
    try:
        value = loader.construct_yaml_int(node)
    except (ValueError, IndexError):
        digits = str(node.value).replace("_", "").lstrip("+-")
        if not (digits.isdigit() and len(digits) > 4000):
            # Only an explicit !!int gets here (`!!int x`, `!!int` on nothing): the implicit
            # resolver tags numbers alone.
            raise yaml.constructor.ConstructorError(
                None, None, "this value is tagged !!int but is not an integer; remove the tag or fix the value",
                node.start_mark) from None
        value = None  # more than 4300 decimal digits: Python refuses to parse it
    if value is None or value.bit_length() > MAX_INT_BITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"this number is too large (more than {MAX_INT_BITS} bits)", node.start_mark)
    return value


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)

# YAML 1.1 reads `on`/`off`/`yes`/`no` as booleans and 010 as octal, which turns record names and
# TXT values into surprises; keep YAML's core types but only the unambiguous true/false.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

# Contexts that name where an unclosed construct began: the mistake is there, not where the
# parser noticed it (usually the next line), so that is the line to report.
_OPENED_AT = ("flow mapping", "flow sequence", "quoted scalar", "simple key", "block scalar")


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"  # marks count from 0


def describe_yaml_error(error: yaml.MarkedYAMLError, text: str | None = None) -> str:
    """One line: where the mistake is and what it is."""
    problem = (error.problem or error.context or "invalid YAML").rstrip()
    mark, context = error.problem_mark, error.context_mark
    if mark is None:
        mark, context = context, None
    if mark is None:
        return f"YAML error: {problem}"
    if context is not None and context.line < mark.line and any(what in (error.context or "") for what in _OPENED_AT):
        # "{type: A, value: 192.0.2.1" with no "}" is noticed at the next line's first key.
        opened = (error.context or "").replace("while parsing a ", "").replace("while scanning a ", "")
        return f"YAML error at {_where(context)}: this {opened} is not closed ({problem} at {_where(mark)})"
    if context is not None and "scanning an alias" in (error.context or ""):
        # `*.apps:` unquoted: YAML reads a leading '*' as an alias, not as a wildcard name.
        return (f"YAML error at {_where(context)}: a name starting with '*' must be quoted, like \"*.apps\": "
                f"unquoted, YAML reads it as an alias ({problem})")
    if text is not None and "mapping values are not allowed" in problem:
        start = _plain_scalar_start(text, mark)
        if start is not None:
            # A key without its ':' runs on into the next line's key, which is where the parser
            # stops; the line that lacks the ':' is the one to fix.
            return (f"YAML error at line {start + 1}: a ':' is missing at the end of this line "
                    f"(found {problem} at {_where(mark)})")
    return f"YAML error at {_where(mark)}: {problem}"


def _plain_scalar_start(text: str, mark: Any) -> int | None:
    """For an error at `mark` right after a plain key whose text began on an earlier line, the
    line (from 0) where it began; None when the key is all on the error's own line."""
    lines = text.split("\n", mark.line + 1)[: mark.line + 1]
    if len(lines) <= mark.line:
        return None
    before = lines[mark.line][: mark.column].strip()
    if not before or any(c in before for c in ":#-[]{},\"'"):
        return None
    line = mark.line
    while line > 0:
        above = lines[line - 1].strip()
        if not above or above.startswith(("#", "-")) or ":" in above:
            break
        line -= 1
    return line if line < mark.line else None


def load_yaml(path: Path, problems: Problems, max_bytes: int = DEFAULT_MAX_BYTES,
              limit_setting: str | None = None) -> Any:
    """The document in `path`, or None with a problem added when it cannot be read or parsed.
    Only a regular file of at most `max_bytes` is read (a FIFO or device at the path is refused
    at once, never waited on); `limit_setting` names the setting that raises the limit."""
    try:
        text = read_regular_file(path, max_bytes).decode("utf-8")
    except FileNotFoundError:
        problems.add("", "file not found")
        return None
    except FileTooLarge as error:
        setting = f" ({limit_setting})" if limit_setting else ""
        problems.add("", f"not read: the file {error}{setting}; is it the right file?")
        return None
    except FileRefused as error:
        problems.add("", f"not read: the file {error}")
        return None
    except OSError as error:
        problems.add("", f"cannot read: {error.strerror or error}")
        return None
    except UnicodeDecodeError as error:
        problems.add("", f"cannot read: not UTF-8 text (byte {error.start})")
        return None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as error:
        problems.add("", describe_yaml_error(error, text))
    except yaml.YAMLError as error:
        problems.add("", f"YAML error: {str(error).splitlines()[0]}")
    return None

