"""hms-sync-build: telling the world from the module, the entry module it writes, its errors,
and (slow: about 7 s, and 10 s more when the engine is built) one real build."""

import os
import subprocess
from pathlib import Path

import pytest

from hms_sync.build import BuildError, build_plugin, defined_functions, entry_module, main, wit_dir, world_from

REPO = Path(__file__).resolve().parents[3]
ENGINE = REPO / "target" / "debug" / "sync-engine"


def test_the_package_carries_the_repositorys_wit():
    # Its own copy (a wheel carries it), the same as the engine's.
    assert (wit_dir() / "sync.wit").is_file()
    assert not (wit_dir() / "sync.wit").is_symlink()
    assert (wit_dir() / "sync.wit").read_bytes() == (REPO / "wit" / "sync.wit").read_bytes()


def test_the_module_is_read_not_run():
    source = """
import sys
from hms_sync import json as read
from helpers import handle as h2
transform = lambda e: b""
if sys.version_info > (3,):
    def handle(e):
        return []
class Resolve: ...
"""
    assert {"sys", "read", "h2", "transform", "handle", "Resolve"} <= defined_functions(source)
    with pytest.raises(BuildError, match="not valid Python"):
        defined_functions("def (", "bad.py")


def test_the_world_is_the_one_whose_function_the_module_defines():
    entry = Path("app.py")
    assert world_from({"transform", "helper"}, entry, None) == "transformer"
    assert world_from({"handle"}, entry, None) == "handler"
    assert world_from({"resolve"}, entry, None) == "resolver"
    with pytest.raises(BuildError, match="defines none of transform, handle, resolve"):
        world_from({"main"}, entry, None)
    with pytest.raises(BuildError, match="defines transform and handle: define one, or pass --world"):
        world_from({"transform", "handle"}, entry, None)
    assert world_from({"transform", "handle"}, entry, "handler") == "handler"
    with pytest.raises(BuildError, match="does not define `resolve`, which the resolver world calls"):
        world_from({"transform"}, entry, "resolver")
    with pytest.raises(BuildError, match="unknown world `filter`"):
        world_from({"transform"}, entry, "filter")


def test_the_entry_module_wraps_the_function_in_the_export_class():
    assert entry_module("app", "handler").splitlines()[1:] == [
        "from hms_sync import _component",
        "import app as plugin",
        "Handle = _component.handler(plugin)",
    ]
    assert "Transform = _component.transformer(plugin)" in entry_module("app", "transformer")
    assert "Resolve = _component.resolver(plugin)" in entry_module("app", "resolver")


def test_what_cannot_be_built_is_said(tmp_path):
    with pytest.raises(BuildError, match="no plugin module: pass one, or write app.py or src/app.py"):
        build_plugin(tmp_path)
    with pytest.raises(BuildError, match="does not exist"):
        build_plugin(tmp_path, "missing.py")
    (tmp_path / "my-plugin.py").write_text("def transform(e): return b''\n")
    with pytest.raises(BuildError, match="name the module as a Python identifier"):
        build_plugin(tmp_path, "my-plugin.py")
    (tmp_path / "handler.py").write_text("def handle(e): return []\n")
    with pytest.raises(BuildError, match="cannot be called `handler`"):
        build_plugin(tmp_path, "handler.py")
    (tmp_path / "app.py").write_text("def main(): pass\n")
    with pytest.raises(BuildError, match="defines none of"):
        build_plugin(tmp_path)
    with pytest.raises(BuildError, match="no WIT at"):
        (tmp_path / "app.py").write_text("def handle(e): return []\n")
        build_plugin(tmp_path, wit=tmp_path)
    assert main([str(tmp_path / "missing.py")]) == 1


@pytest.mark.slow
def test_a_real_build_runs_in_the_engine(tmp_path, monkeypatch, capsys):
    pytest.importorskip("componentize_py")
    plugin = tmp_path / "echo-plugin"
    plugin.mkdir()
    (plugin / "app.py").write_text(
        "from hms_sync import config, drop, emit, json, log\n"
        "def handle(event):\n"
        "    value = json(event, {'n': 'integer'})\n"
        "    log.info('n is', value['n'])\n"
        "    if value['n'] < 0:\n"
        "        return [drop('negative')]\n"
        "    return [emit(config.get('type', 'n.seen'), value, key=f\"n/{value['n']}\")]\n"
    )
    monkeypatch.chdir(plugin)
    assert main([]) == 0
    out = plugin / "dist" / "echo-plugin.wasm"
    assert "built dist/echo-plugin.wasm (handler" in capsys.readouterr().out
    # A component, not a core module: the magic, then the component layer's version.
    assert out.read_bytes()[:8] == b"\0asm\x0d\x00\x01\x00"
    if not ENGINE.exists():
        pytest.skip("no engine at target/debug/sync-engine to run the component")
    fixtures = plugin / "echo.fixtures.json"
    fixtures.write_text(
        '[{"event": {"type": "t", "payload": {"n": 5}}, "expect": {"actions": [{"emit": {"type": "renamed", "payload": {"n": 5}, "key": "n/5"}}]}},'
        ' {"event": {"type": "t", "payload": {"n": -1}}, "expect": {"actions": [{"drop": "negative"}]}},'
        ' {"event": {"type": "t", "payload": {"n": "5"}}, "expect": {"error": "invalid-input"}}]'
    )
    done = subprocess.run(
        [str(ENGINE), "plugin", "test", str(out), "--fixtures", str(fixtures), "--set", "type=renamed"],
        capture_output=True,
        text=True,
        env=dict(os.environ, NO_COLOR="1"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 of 3 case(s) passed (handler" in done.stdout
