"""The engine is importable without Django: no module under containers/engine imports django or the app."""

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "containers" / "engine"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_engine_imports_neither_django_nor_the_app() -> None:
    offenders = []
    for path in sorted(ENGINE.rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            outside_engine = name.startswith("containers") and not name.startswith("containers.engine")
            if top == "django" or outside_engine:
                offenders.append(f"{path.relative_to(ENGINE.parent.parent)} imports {name}")
    assert not offenders, "the engine must stay free of Django and of the app above it:\n" + "\n".join(offenders)


def test_the_walk_sees_the_engine() -> None:
    assert len(list(ENGINE.rglob("*.py"))) > 10, "the layering test walked no engine files; did the path move?"
