"""hms-sync-build: makes a plugin module a WebAssembly component for the HMS Synchronization
Engine. It writes a small entry module that wraps the plugin's function in the export class
componentize-py expects for the plugin's world (see :mod:`hms_sync._component`), and runs
componentize-py with the WIT this package ships::

    hms-sync-build [module.py] [-o FILE] [--world transformer|handler|resolver] [--wit DIR]

The module defaults to ``app.py``, else ``src/app.py``; the output to ``dist/<name>.wasm``, where
the name is ``[project].name`` of a ``pyproject.toml`` beside it, else the directory's name; the
world to the one whose function the module defines (``transform``, ``handle`` or ``resolve``).

The WIT is ``hms_sync/wit``, the package's own copy of the engine's ``wit/`` (the engine's tests
hold the two equal), so a wheel carries the WIT it builds against. ``--wit`` overrides it.

Python code the module imports is found beside the module, in the SDK, and in the active
virtual environment's site-packages; only what the module imports ends up in the component.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple

from .run import WORLDS

__all__ = ["BuildError", "build_plugin", "defined_functions", "entry_module", "wit_dir", "main"]

#: The entry module's name inside the component (it must not be a world's name).
ENTRY = "hms_sync_entry"
#: Module names a plugin module cannot have: they are taken inside the component.
TAKEN = {ENTRY, "hms_sync", "wit_world", "componentize_py_types", "componentize_py_runtime", *WORLDS}

_FACTORIES = {"transformer": "transformer", "handler": "handler", "resolver": "resolver"}
_CLASSES = {"transformer": "Transform", "handler": "Handle", "resolver": "Resolve"}


class BuildError(Exception):
    """Why a plugin cannot be built; the message says what to do."""


def wit_dir() -> Path:
    """The WIT package the SDK builds against (``hms_sync/wit``)."""
    return Path(__file__).resolve().parent / "wit"


def defined_functions(source: str, filename: str = "<module>") -> set:
    """The names a module defines at its top level (functions, assignments and imports): the
    world is told from them without running the module."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as e:
        raise BuildError(f"{filename} is not valid Python: {e}") from None
    names = set()

    def targets(node: ast.AST) -> Iterable[str]:
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                yield from targets(element)

    def visit(body: Sequence[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    names.update(targets(target))
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                names.update(targets(node.target))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "finalbody", []))

    visit(tree.body)
    return names


def world_from(defined: set, entry: Path, world: Optional[str]) -> str:
    """The world to build: ``world`` when given (checked), else the one whose function the
    module defines."""
    if world is not None:
        if world not in WORLDS:
            raise BuildError(f"unknown world `{world}`: transformer, handler or resolver")
        if WORLDS[world] not in defined:
            raise BuildError(f"{entry} does not define `{WORLDS[world]}`, which the {world} world calls")
        return world
    found = [w for w, fn in WORLDS.items() if fn in defined]
    if not found:
        raise BuildError(
            f"{entry} defines none of transform, handle, resolve: define the function of the "
            "plugin's world"
        )
    if len(found) > 1:
        both = " and ".join(WORLDS[w] for w in found)
        raise BuildError(f"{entry} defines {both}: define one, or pass --world")
    return found[0]


def entry_module(module: str, world: str) -> str:
    """The source of the component's entry module: the plugin module's function wrapped in the
    export class componentize-py instantiates for ``world``."""
    return (
        f"# Made by hms-sync-build: the {world} world's export, running `{module}.{WORLDS[world]}`.\n"
        "from hms_sync import _component\n"
        f"import {module} as plugin\n"
        f"{_CLASSES[world]} = _component.{_FACTORIES[world]}(plugin)\n"
    )


def _project_name(directory: Path) -> Optional[str]:
    path = directory / "pyproject.toml"
    if not path.exists():
        return None
    import tomllib

    try:
        with path.open("rb") as f:
            return tomllib.load(f).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return None


def _default_entry(directory: Path) -> Path:
    for candidate in ("app.py", "src/app.py"):
        if (directory / candidate).is_file():
            return directory / candidate
    raise BuildError("no plugin module: pass one, or write app.py or src/app.py")


def _componentize_command() -> list:
    # componentize-py from the environment running this build (its console script is a thin
    # wrapper around `componentize_py.script`).
    try:
        import componentize_py  # noqa: F401
    except ImportError:
        found = shutil.which("componentize-py")
        if found is None:
            raise BuildError(
                "componentize-py is not installed: pip install componentize-py (see "
                "sdk/python/requirements.txt)"
            ) from None
        return [found]
    return [
        sys.executable,
        "-c",
        "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; "
        "sys.exit(script())",
    ]


def _trimmed(message: str) -> str:
    """componentize-py's failure without the wrapper it is raised through or a Rust backtrace:
    for a module that fails at import, the module's own traceback."""
    wrapper = "AssertionError: "
    if message.startswith("Traceback") and wrapper in message:
        message = message.split(wrapper, 1)[1]
    return message.split("\nStack backtrace:", 1)[0].strip()


def build_plugin(
    directory: Optional[os.PathLike] = None,
    entry: Optional[os.PathLike] = None,
    out: Optional[os.PathLike] = None,
    world: Optional[str] = None,
    wit: Optional[os.PathLike] = None,
    quiet: bool = False,
) -> Tuple[Path, str]:
    """Builds the component; returns its path and world. Raises :class:`BuildError`."""
    directory = Path(directory or os.getcwd()).resolve()
    entry = (directory / entry).resolve() if entry else _default_entry(directory)
    if not entry.is_file():
        raise BuildError(f"{entry} does not exist")
    if entry.suffix != ".py":
        raise BuildError(f"{entry} is not a Python module (.py)")
    module = entry.stem
    if not module.isidentifier():
        raise BuildError(f"{entry.name} cannot be imported: name the module as a Python identifier")
    if module in TAKEN:
        raise BuildError(f"a plugin module cannot be called `{module}`: rename {entry.name}")
    world = world_from(defined_functions(entry.read_text("utf-8"), str(entry)), entry, world)

    wit_path = Path(wit).resolve() if wit else wit_dir()
    if not (wit_path / "sync.wit").is_file():
        raise BuildError(
            f"no WIT at {wit_path} (hms_sync/wit should link to the repository's wit/): "
            "pass --wit DIR"
        )
    name = _project_name(directory) or directory.name
    out = Path(out).resolve() if out else directory / "dist" / f"{name}.wasm"
    sdk_root = Path(__file__).resolve().parent.parent

    env = dict(os.environ, RUST_BACKTRACE="0", RUST_LIB_BACKTRACE="0")
    if sys.prefix != sys.base_prefix:
        # componentize-py adds $VIRTUAL_ENV's site-packages to the path: the plugin's own
        # dependencies installed in this environment.
        env["VIRTUAL_ENV"] = sys.prefix
    with tempfile.TemporaryDirectory(prefix="hms-sync-build-") as work:
        (Path(work) / f"{ENTRY}.py").write_text(entry_module(module, world), "utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [
            *_componentize_command(),
            "-d",
            str(wit_path),
            "-w",
            world,
            "componentize",
            "-p",
            work,
            "-p",
            str(entry.parent),
            "-p",
            str(sdk_root),
            ENTRY,
            "-o",
            str(out),
        ]
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(
                f"componentize-py failed ({done.returncode}):\n"
                + _trimmed(done.stderr.strip() or done.stdout.strip())
            )
        if not quiet and done.stderr.strip():
            print(done.stderr.strip(), file=sys.stderr)
    return out, world


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hms-sync-build",
        description="Makes a plugin module a WebAssembly component for the HMS Synchronization Engine.",
    )
    parser.add_argument("module", nargs="?", help="the plugin module (default: app.py, else src/app.py)")
    parser.add_argument("-o", "--out", help="the component to write (default: dist/<name>.wasm)")
    parser.add_argument("-w", "--world", choices=sorted(WORLDS), help="the world (default: told from the module)")
    parser.add_argument("--wit", help="the WIT package to build against (default: the SDK's)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        out, world = build_plugin(entry=args.module, out=args.out, world=args.world, wit=args.wit)
    except BuildError as e:
        print(f"hms-sync-build: {e}", file=sys.stderr)
        return 1
    size = out.stat().st_size
    try:
        shown = out.relative_to(Path.cwd())
    except ValueError:
        shown = out
    print(f"built {shown} ({world}, {size / 1e6:.1f} MB, {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
