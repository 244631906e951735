"""Read a YAML params file as DVC does, but refuse what ``yaml.safe_load`` would let through silently:
duplicate keys (the last one would win) and alias bombs (a few lines that expand to billions of values),
and say in one line why a file cannot be read (missing, not UTF-8, not YAML).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from vitinspect.core.errors import ParamsError

# A params file holds a few hundred values; more than this after expanding YAML aliases is an alias bomb.
MAX_VALUES = 10_000


def read_params_file(path: str | Path):
    """The parsed YAML document of ``path`` (None when empty), or ParamsError with one line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it as UTF-8") from None
    return read_yaml(text, path)


def read_yaml(text: str, path: str | Path = "params.yaml"):
    """Parse YAML as DVC does, but refuse duplicate keys (yaml.safe_load keeps the last one silently)
    and documents that expand to more than MAX_VALUES values (alias bombs) before building them."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}") from None
    finally:
        loader.dispose()


def _check_nodes(root, path) -> None:
    """Walk the composed YAML graph (aliases followed, so counted expanded), bounded by MAX_VALUES."""
    seen = 0
    stack = [(root, "")]
    while stack:
        node, where = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ParamsError(f"{path}: expands to more than {MAX_VALUES:,} values (YAML aliases?); write the values out")
        if isinstance(node, yaml.MappingNode):
            keys = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                name = f"{where}.{key}" if where else str(key)
                if key is not None and key != "<<":
                    if key in keys:
                        raise ParamsError(f"{path}: duplicate key {name if len(name) <= 80 else name[:77] + '...'} (line {key_node.start_mark.line + 1}); "
                                          "keep one (DVC refuses duplicates too)")
                    keys.add(key)
                stack.append((key_node, where))
                stack.append((value_node, name))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(node.value))
