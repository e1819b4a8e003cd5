"""The layout is the architecture: each layer imports only the layers below it, and no module imports
itself back through others. Read from the source (every import, also those inside functions).

    base      clipseek.errors, clipseek.settings, clipseek.docs (the wire types), clipseek.validation,
              clipseek.torch_free (keeping torch out of processes that run no model)
    domain    clipseek.media | clipseek.model | clipseek.index  (each on its own; plus clipseek.demo's data)
    engine    clipseek.engine   (executors' base, Flow, serve, gateway, deploy)
    api       clipseek.api      (client, CLI)
    outside   services/* (executors: engine + domain), web/* (the page: api + base, and media for the files
              it handles itself: clip downloads, uploads)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

BASE = {"clipseek", "clipseek.errors", "clipseek.settings", "clipseek.docs", "clipseek.validation",
        "clipseek.torch_free", "clipseek.types"}
DOMAIN = ("clipseek.media", "clipseek.model", "clipseek.index", "clipseek.demo")
THIRD_PARTY_SERVICES = ("jina", "docarray")  # the service framework: only the engine, services/ and docs use it


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions (not those only for type checking)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # drop `if TYPE_CHECKING:` blocks: they import nothing at run time
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def layer(module: str) -> str:
    if module in BASE or module == "clipseek.__main__":
        return "base" if module != "clipseek.__main__" else "api"
    for name in DOMAIN:
        if module == name or module.startswith(name + "."):
            return name
    for name in ("clipseek.engine", "clipseek.api"):
        if module == name or module.startswith(name + "."):
            return name.split(".")[1]
    if module.startswith("services."):
        return "services"
    if module.startswith("web"):
        return "web"
    return "other"


ALLOWED = {
    "base": {"base"},
    "clipseek.media": {"base", "clipseek.media"},
    "clipseek.model": {"base", "clipseek.model", "clipseek.demo"},
    "clipseek.index": {"base", "clipseek.index"},
    "clipseek.demo": {"base", "clipseek.demo"},
    "engine": {"base", "engine", "clipseek.media", "clipseek.model", "clipseek.index", "clipseek.demo"},
    "api": {"base", "api", "engine", "clipseek.media", "clipseek.model", "clipseek.index", "clipseek.demo"},
    "services": {"base", "engine", "clipseek.media", "clipseek.model", "clipseek.index", "clipseek.demo"},
    "web": {"base", "api", "web", "clipseek.media", "clipseek.demo"},  # it cuts clips and checks uploads itself
}


def sources() -> dict[str, Path]:
    files = [*REPO.joinpath("clipseek").rglob("*.py"), *REPO.joinpath("services").rglob("executor.py"),
             *REPO.joinpath("web").glob("*.py")]
    return {module_name(path): path for path in files}


def clipseek_imports(path: Path, known: set[str]) -> set[str]:
    """The project's modules that ``path`` imports (a ``from package import name`` counts as the
    module ``package.name`` when that is a module, else as ``package``)."""
    out = set()
    for name in imports_of(path):
        if not name.startswith(("clipseek", "services", "web")):
            continue
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def test_every_layer_imports_only_the_layers_below_it():
    modules = sources()
    known = set(modules)
    wrong = []
    for module, path in sorted(modules.items()):
        mine = layer(module)
        for imported in clipseek_imports(path, known):
            if imported == module:
                continue
            theirs = layer(imported)
            if theirs not in ALLOWED.get(mine, set()):
                wrong.append(f"{module} ({mine}) imports {imported} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_the_domain_layers_know_nothing_of_jina_or_docarray():
    modules = sources()
    wrong = []
    for module, path in modules.items():
        if layer(module) in DOMAIN and module != "clipseek.demo":
            for name in imports_of(path):
                if name.split(".")[0] in THIRD_PARTY_SERVICES or name == "clipseek.docs":
                    wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_back_through_others():
    modules = sources()
    known = set(modules)
    graph = {m: clipseek_imports(p, known) - {m} for m, p in modules.items()}
    # strongly connected components (Tarjan): any with more than one module is a circle
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not circles, circles


@pytest.mark.parametrize("package", ["clipseek.media", "clipseek.model", "clipseek.index", "clipseek.engine",
                                     "clipseek.api"])
def test_each_layer_is_a_package_that_says_what_it_holds(package):
    init = REPO / Path(*package.split(".")) / "__init__.py"
    assert init.is_file(), f"{package} needs an __init__.py"
    assert ast.get_docstring(ast.parse(init.read_text())), f"{package}/__init__.py should say what the layer holds"
