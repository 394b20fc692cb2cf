"""The README's architecture section names the tree as it is: every box of the data-flow sketch
is a module (and, where it names one, a function or class in it) found in one hop, and the
layer table lists every module of each `runtime/` layer."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("commands", "server", "engine", "remote", "sinks", "media", "model", "core")


def architecture_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Architecture")
    return text[start : text.index("\n## ", start + 1)]


def sketch() -> str:
    section = architecture_section()
    start = section.index("```\n") + 4
    return section[start : section.index("```", start)]


def resolve(parts: list[str]) -> tuple[Path | None, list[str]]:
    """The longest run of `parts` that is a module file, and what is left (an attribute)."""
    for cut in range(len(parts), 1, -1):
        base = ROOT.joinpath(*parts[:cut])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate, parts[cut:]
    return None, []


def test_every_box_of_the_sketch_is_a_module() -> None:
    pattern = r"\b((?:models|runtime\.)?[a-z_]+(?:\.[a-z_]+)+(?:\.[A-Z][A-Za-z_]*)?)\b"
    names = re.findall(pattern, sketch())
    dotted = [n.removeprefix("runtime.") for n in names if not n.endswith((".onnx", ".py"))]
    checked = 0
    for name in dotted:
        package = name.split(".")[0]
        if package != "models" and package not in LAYERS:
            continue
        parts = name.split(".") if package == "models" else ["runtime", *name.split(".")]
        path, attr = resolve(parts)
        assert path is not None and len(attr) <= 1, (
            f"the README's sketch names {name}, which is not a module"
        )
        if attr:
            source = path.read_text(encoding="utf-8")
            assert re.search(rf"^(?:class|def) {attr[0]}\b", source, re.MULTILINE), (
                f"the README's sketch names {name}, but {path.name} defines no {attr[0]}"
            )
        checked += 1
    assert checked >= 20, f"only {checked} module names found in the sketch"


def test_layer_table_lists_every_module() -> None:
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `runtime\.([a-z]+)` \| (.+) \|$", architecture_section(), re.M)
    }
    assert set(rows) == set(LAYERS), "the layer table's rows are not the runtime's layers"
    for layer, holds in rows.items():
        named = set(re.findall(r"`([a-z_.]+)`", holds))
        folder = ROOT / "runtime" / layer
        modules = {
            ".".join(p.relative_to(folder).with_suffix("").parts).removesuffix(".__init__")
            for p in folder.rglob("*.py")
        } - {"__init__"}
        missing = sorted(modules - named)
        assert not missing, f"README's layer table: runtime.{layer} does not list {missing}"
