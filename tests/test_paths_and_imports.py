"""Virtual paths stay jailed and normalised; the package keeps its import layering."""

from __future__ import annotations

import ast
import contextlib
import posixpath
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry import paths
from fileferry.paths import MAX_NAME, MAX_PATH, PathError, resolve

# --- resolve: examples --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cwd", "arg", "expected"),
    [
        ("/", "a", "/a"),
        ("/", "/", "/"),
        ("/", "", "/"),
        ("/", ".", "/"),
        ("/", "..", "/"),
        ("/", "../../../etc/passwd", "/etc/passwd"),
        ("/a/b", "..", "/a"),
        ("/a/b", "../..", "/"),
        ("/a/b", "../../..", "/"),
        ("/a/b", "c/../d", "/a/b/d"),
        ("/a", "/b/./c//d/", "/b/c/d"),
        ("/a", "//b", "/b"),
        ("/a", "./", "/a"),
        ("/a", "...", "/a/..."),
        ("/a", "..x", "/a/..x"),
        ("/a", " spaced name ", "/a/ spaced name "),
        ("/a", "caf\udce9", "/a/caf\udce9"),
        ("/a", "ünï/😀", "/a/ünï/😀"),
        ("/a", "b/../../../../c", "/c"),
    ],
)
def test_resolve(cwd, arg, expected):
    assert resolve(cwd, arg) == expected


@pytest.mark.parametrize("char", [chr(c) for c in range(32)] + ["\x7f", "\\"])
def test_forbidden_characters_are_refused(char):
    for arg in (char, f"a{char}b", f"/x/{char}", f"../{char}"):
        with pytest.raises(PathError):
            resolve("/", arg)


def test_backslash_is_not_a_separator():
    with pytest.raises(PathError):
        resolve("/", "..\\..\\etc")


def test_max_name_in_bytes():
    assert resolve("/", "a" * MAX_NAME) == "/" + "a" * MAX_NAME
    with pytest.raises(PathError):
        resolve("/", "a" * (MAX_NAME + 1))
    # é is two bytes in UTF-8: 127 of them fit, 128 do not.
    assert resolve("/", "é" * 127) == "/" + "é" * 127
    with pytest.raises(PathError):
        resolve("/", "é" * 128)
    # A surrogate-escaped raw byte counts as the one byte it stands for.
    assert resolve("/", "\udce9" * MAX_NAME) == "/" + "\udce9" * MAX_NAME
    with pytest.raises(PathError):
        resolve("/", "\udce9" * (MAX_NAME + 1))


def test_max_path():
    long_arg = "/".join(["a" * 100] * 50)
    assert len(long_arg) > MAX_PATH
    with pytest.raises(PathError):
        resolve("/", long_arg)
    # An argument just at the cap, with the cwd pushing the result over it.
    cwd = resolve("/", "/".join(["d" * 200] * 20))
    assert len(cwd) <= MAX_PATH
    with pytest.raises(PathError):
        resolve(cwd, "e" * 100)
    # Components removed by ".." do not count towards the result.
    assert resolve("/", "x/../" * 800) == "/"
    with pytest.raises(PathError):
        resolve("/", "x/../" * 1000)  # but the argument itself is capped


@pytest.mark.parametrize("arg", ["\ud800", "a\udfffb", "\ud83d"])
def test_lone_surrogates_that_are_not_escaped_bytes_are_refused(arg):
    with pytest.raises(PathError):
        resolve("/", arg)


def test_split_join_components():
    assert paths.split("/") == ("/", "")
    assert paths.split("/a") == ("/", "a")
    assert paths.split("/a/b c") == ("/a", "b c")
    assert paths.join("/", "a") == "/a"
    assert paths.join("/a", "b") == "/a/b"
    for bad in ("", ".", "..", "a/b"):
        with pytest.raises(PathError):
            paths.join("/a", bad)
    assert paths.components("/") == []
    assert paths.components("/a/b") == ["a", "b"]


# --- resolve: properties ------------------------------------------------------------------

segment = st.one_of(
    st.sampled_from(["", ".", "..", "...", "a", "b", "é", " ", "\udce9", "x y", "😀"]),
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="/\\", exclude_categories=("Cc",)),
        max_size=8,
    ),
)
path_args = st.lists(segment, max_size=12).map("/".join)
any_args = st.one_of(path_args, path_args.map(lambda p: "/" + p), st.text(max_size=40))


@st.composite
def cwds(draw: st.DrawFn) -> str:
    try:
        return resolve("/", draw(path_args))
    except PathError:
        return "/"


def _model(cwd: str, arg: str) -> str:
    """posixpath's lexical normalisation, with POSIX's special leading ``//`` undone."""
    joined = arg if arg.startswith("/") else f"{cwd}/{arg}"
    norm = posixpath.normpath(joined)
    return "/" + norm.lstrip("/")


@settings(max_examples=400, deadline=None)
@given(cwd=cwds(), arg=any_args)
def test_resolve_properties(cwd, arg):
    try:
        result = resolve(cwd, arg)
    except PathError:
        return
    assert result.startswith("/")
    assert result == "/" or not result.endswith("/")
    assert "//" not in result
    parts = result.split("/")[1:]
    if result != "/":
        assert all(p not in ("", ".", "..") for p in parts)
        assert all(len(p.encode("utf-8", "surrogateescape")) <= MAX_NAME for p in parts)
    assert len(result) <= MAX_PATH
    assert not paths._FORBIDDEN.intersection(result)
    # Idempotent, and absolute: the result names itself from anywhere.
    assert resolve("/", result) == result
    assert resolve(cwd, result) == result
    assert resolve("/some/where/else", result) == result
    # Lexically what POSIX normalisation says, never above the root.
    assert result == _model(cwd, arg)


@settings(max_examples=300, deadline=None)
@given(
    cwd=cwds(),
    arg=st.text(
        alphabet=st.one_of(
            st.characters(codec=None, exclude_categories=()),
            st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
            st.sampled_from("/."),
        )
    ),
)
def test_resolve_raises_nothing_but_path_error(cwd, arg):
    with contextlib.suppress(PathError):
        resolve(cwd, arg)


@settings(max_examples=200, deadline=None)
@given(
    cwd=cwds(),
    before=path_args,
    bad=st.sampled_from([*(chr(c) for c in range(32)), "\x7f", "\\"]),
    after=path_args,
)
def test_any_forbidden_character_is_refused(cwd, before, bad, after):
    with pytest.raises(PathError):
        resolve(cwd, before + bad + after)


@settings(max_examples=200, deadline=None)
@given(cwd=cwds(), arg=path_args)
def test_dotdot_never_escapes_the_root(cwd, arg):
    climbing = "../" * 20 + arg
    try:
        result = resolve(cwd, climbing)
    except PathError:
        return
    assert result == resolve("/", arg)


# --- the import rule --------------------------------------------------------------------------

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "fileferry"
BANNED_IN_CORE = {"asyncio", "socket", "ssl", "os", "time", "logging"}


def _module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, src: Path = SRC) -> set[str]:
    """Every module a file imports, anywhere in it (functions and TYPE_CHECKING too).

    ``from a import b`` counts as importing ``a.b`` (b may be a submodule).
    """
    module = _module_name(path, src)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            for alias in node.names:
                found.add(mod if alias.name == "*" else f"{mod}.{alias.name}")
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = {
    _module_name(p): _imports(p)
    for p in sorted(PACKAGE.rglob("*.py"))
    if "__pycache__" not in p.parts
}


def _own(imports: set[str]) -> set[str]:
    return {i for i in imports if _under(i, "fileferry")}


def test_the_scanner_sees_real_imports():
    # Guards against a vacuous rule test: known imports must be found.
    assert "fileferry.protocol.session" in MODULES
    assert "fileferry.paths" in MODULES
    assert any(_under(i, "fileferry.paths") for i in MODULES["fileferry.protocol.commands"])
    assert any(_under(i, "asyncio") for i in MODULES["fileferry.server.control"])
    assert any(_under(i, "fileferry.server") for i in MODULES["fileferry.cli.serve"])


def test_relative_imports_are_resolved(tmp_path):
    pkg = tmp_path / "src" / "fileferry" / "protocol"
    pkg.mkdir(parents=True)
    mod = pkg / "x.py"
    mod.write_text("from . import events\nfrom ..server import app\nfrom .. import paths\n")
    assert _imports(mod, tmp_path / "src") == {
        "fileferry.protocol.events",
        "fileferry.server.app",
        "fileferry.paths",
    }


def test_protocol_is_sans_io_and_self_contained():
    bad = {}
    for name, imports in MODULES.items():
        if not _under(name, "fileferry.protocol"):
            continue
        wrong = {
            i
            for i in _own(imports)
            if not (_under(i, "fileferry.protocol") or _under(i, "fileferry.paths"))
        }
        io = {i for i in imports if i.split(".")[0] in BANNED_IN_CORE}
        if wrong or io:
            bad[name] = sorted(wrong | io)
    assert bad == {}


def test_paths_imports_nothing_of_fileferry_and_does_no_io():
    imports = MODULES["fileferry.paths"]
    assert _own(imports) == set()
    assert {i for i in imports if i.split(".")[0] in BANNED_IN_CORE} == set()


@pytest.mark.parametrize("package", ["fileferry.storage", "fileferry.users", "fileferry.limits"])
def test_storage_users_and_limits_import_only_paths_errors_and_themselves(package):
    allowed = (package, "fileferry.paths", "fileferry.errors")
    bad = {}
    for name, imports in MODULES.items():
        if not _under(name, package):
            continue
        wrong = {i for i in _own(imports) if not any(_under(i, a) for a in allowed)}
        if wrong:
            bad[name] = sorted(wrong)
    assert bad == {}


def test_only_the_cli_the_root_and_the_server_import_the_server():
    bad = {}
    for name, imports in MODULES.items():
        if name == "fileferry" or _under(name, "fileferry.cli") or _under(name, "fileferry.server"):
            continue
        wrong = {i for i in imports if _under(i, "fileferry.server")}
        if wrong:
            bad[name] = sorted(wrong)
    assert bad == {}


def test_the_server_reaches_the_backend_factory_only_from_its_composition_root():
    bad = {}
    for name, imports in MODULES.items():
        if not _under(name, "fileferry.server") or name == "fileferry.server.app":
            continue
        wrong = {i for i in imports if _under(i, "fileferry.backends")}
        if wrong:
            bad[name] = sorted(wrong)
    assert bad == {}
    assert any(_under(i, "fileferry.backends") for i in MODULES["fileferry.server.app"])


# --- no import cycle at run time --------------------------------------------------------------


def _runtime_edges(path: Path, modules: set[str], src: Path = SRC) -> set[str]:
    """The package's modules ``path`` imports when it runs, in functions too.

    Imports under ``if TYPE_CHECKING:`` are left out (they never run);
    ``from a import b`` is an edge to ``a.b`` when that is a module, else to
    ``a``. A lazy import inside a function still counts: hiding a cycle in a
    function is exactly what this rule is meant to catch.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    module = _module_name(path, src)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {e for e in edges if e in modules and e != module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _graph(package: Path, src: Path) -> dict[str, set[str]]:
    paths = [p for p in sorted(package.rglob("*.py")) if "__pycache__" not in p.parts]
    modules = {_module_name(p, src) for p in paths}
    return {_module_name(p, src): _runtime_edges(p, modules, src) for p in paths}


def test_the_cycle_finder_sees_a_lazy_cycle_and_ignores_type_checking(tmp_path):
    pkg = tmp_path / "src" / "fileferry"
    (pkg / "server").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "server" / "__init__.py").write_text("")
    (pkg / "server" / "a.py").write_text("from fileferry.server import b\n")
    (pkg / "server" / "b.py").write_text("def f():\n    from fileferry.server.a import x\n")
    (pkg / "server" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
    )
    (pkg / "server" / "d.py").write_text("from . import c\n")
    graph = _graph(pkg, tmp_path / "src")
    assert _cycles(graph) == [["fileferry.server.a", "fileferry.server.b"]]
    assert graph["fileferry.server.c"] == set()


def test_no_import_cycle_at_run_time():
    graph = _graph(PACKAGE, SRC)
    assert graph["fileferry.server.app"]  # the scanner found the root's imports
    assert _cycles(graph) == []


#: Concrete backends: only the composition root and the runners that build a
#: server (a thread for tests, the worker supervisor) may name them.
_CONCRETE = (
    "fileferry.storage.local",
    "fileferry.storage.localfiles",
    "fileferry.storage.localscan",
    "fileferry.storage.memory",
    "fileferry.users.sqlite",
    "fileferry.users.static",
    "fileferry.limits.local",
    "fileferry.limits.ledger",
    "fileferry.limits.shared",
    "fileferry.limits.sharedbans",
    "fileferry.limits.sharedquota",
    "fileferry.limits.factory",
)
_BUILDERS = {
    "fileferry.server.app",
    "fileferry.server.thread",
    "fileferry.server.workers",
    # The pytest plugin's fixtures build servers (on a thread) over memory or tmp_path.
    "fileferry.server.pytestplugin",
}


def test_the_server_depends_on_interfaces_not_on_concrete_backends():
    graph = _graph(PACKAGE, SRC)
    bad = {}
    for name, edges in graph.items():
        if not _under(name, "fileferry.server") or name in _BUILDERS:
            continue
        wrong = {e for e in edges if any(_under(e, c) for c in _CONCRETE)}
        if wrong:
            bad[name] = sorted(wrong)
    assert bad == {}
