"""Reading a job document (YAML or JSON text) within limits, before any object is built.

A YAML alias bomb is a few hundred bytes whose expansion is billions of nodes, and 10,000 nested
brackets overflow the stack; both are refused from the node graph, before construction. JSON is
read by `json` (it joins surrogate pairs; YAML's `\\uD83D\\uDE00` gives two halves, joined here).
Every limit is a number a real job spec is far below: a spec has about 60 nodes and depth 4.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from planner.errors import FieldProblem, SpecError

MAX_DOCUMENT_BYTES = 65_536  # a spec is a few hundred bytes; PyYAML reads about 150 KB/s of worst-case input
MAX_DEPTH = 32  # nested mappings / lists
MAX_ALIASES = 100  # `*name` references in one document
MAX_NODES = 20_000  # scalars, lists and mappings after every alias is expanded
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels; a job spec is a few levels deep"


class _Limited:
    """A loader's composer that counts depth and aliases while it composes the node graph."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.depth, self.aliases, self.nodes = 0, 0, 0

    def compose_node(self, parent, index):
        self.nodes += 1  # stop a long flat list early, before the rest of it is parsed
        if self.nodes > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES:,} values; a job spec has about a hundred")
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} YAML aliases (*name); write the values out")
            return super().compose_node(parent, index)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(TOO_DEEP)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _PlainLoader(_Limited, yaml.SafeLoader):
    """PyYAML in Python: the reference, and the one whose errors are shown."""


try:  # libyaml's parser in C (four times faster) under PyYAML's composer, which _Limited extends
    from yaml._yaml import CParser

    class _CSafeLoader(Composer, CParser, SafeConstructor, Resolver):
        def __init__(self, stream: str):
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

    class _FastLoader(_Limited, _CSafeLoader):
        """libyaml's parser, the limits of _Limited."""
except ImportError:  # PyYAML built without libyaml
    _FastLoader = _PlainLoader


class _Refused(Exception):
    """A limit was hit; the message says which."""


def _expanded_nodes(root: yaml.Node) -> int:
    """Nodes after alias expansion, counted on the graph (shared nodes once each, so this is cheap)."""
    sizes: dict[int, int] = {}
    pending: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in pending:
            raise _Refused("a YAML alias refers to a node that contains it (a recursive document)")
        pending.add(key)
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else [])
        total = 1 + sum(size(child) for child in children)  # depth is bounded, so recursion is too
        pending.discard(key)
        sizes[key] = min(total, MAX_NODES + 1)  # saturate: a bomb's count would need huge integers
        return sizes[key]

    return size(root)


def _load_yaml(text: str) -> Any:
    """libyaml reads nearly every spec; what it refuses (it is stricter: YAML's `\\uD83D` escapes of a surrogate
    half, for one) is read again by PyYAML, whose answer, or error, is the reference."""
    try:
        return _load_with(_FastLoader, text)
    except yaml.YAMLError:
        if _FastLoader is _PlainLoader:
            raise
    return _load_with(_PlainLoader, text)


def _load_with(loader_class: type, text: str) -> Any:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node) > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES:,} values once YAML aliases are expanded")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _depth_of(data: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH and isinstance(value, dict | list):
            stack.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return deepest


def _load_json(text: str) -> Any:
    data = json.loads(text)
    if _depth_of(data) > MAX_DEPTH:
        raise _Refused(TOO_DEEP)
    return data


def join_surrogates(data: Any) -> Any:
    """Strings with UTF-16 surrogate pairs (YAML's `\\uD83D\\uDE00`) as the characters they encode.

    A lone surrogate stays as it is; the spec's validation names the field that holds it.
    """
    if isinstance(data, str):
        try:
            return data.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            return data
    if isinstance(data, dict):
        return {join_surrogates(key): join_surrogates(value) for key, value in data.items()}
    if isinstance(data, list):
        return [join_surrogates(value) for value in data]
    return data


def load_document(raw: bytes | str, source: str = "<body>") -> Any:
    """The document's data, or SpecError naming `source` when it is too large, malformed or over a limit."""
    def refuse(message: str) -> SpecError:
        return SpecError([FieldProblem(source, None, message)])

    if len(raw) > MAX_DOCUMENT_BYTES:
        raise refuse(f"larger than {MAX_DOCUMENT_BYTES:,} bytes; a job spec is a few hundred")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as error:
        raise refuse(f"not UTF-8 text (a bad byte at position {error.start}); save the file as UTF-8") from None
    if not text.strip():
        return None
    try:
        if text.lstrip().startswith("{"):
            try:
                return _load_json(text)  # json joins surrogate pairs itself
            except json.JSONDecodeError:
                pass  # a YAML flow mapping such as `{name: x}` is not JSON
        return join_surrogates(_load_yaml(text))
    except _Refused as error:
        raise refuse(str(error)) from None
    except RecursionError:
        raise refuse(TOO_DEEP) from None
    except yaml.YAMLError as error:
        raise refuse(f"not valid YAML or JSON: {_yaml_problem(error)}") from None
    except ValueError as error:  # an integer of more than 4,300 digits, a date that does not exist, ...
        raise refuse(f"a value cannot be read: {_first_line(error)}") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong and where, without the snippet of the document that PyYAML quotes."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{error.problem}{where}"
    return _first_line(error)


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
