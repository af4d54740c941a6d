"""The bridge to the component (hms_sync._component), against the bindings componentize-py
generates for each world: what the engine receives is the WIT's types, and every failure the
WIT error. Runs on CPython, with the generated modules and stand-ins for the engine's imports."""

import importlib
import subprocess
import sys
from types import SimpleNamespace as plugin

import pytest

import hms_sync
from hms_sync import deliver, drop, emit, keep, log, config, merged, rejected, replace, run
from hms_sync.build import wit_dir

pytest.importorskip("componentize_py")

GENERATED = ("wit_world", "componentize_py_types", "componentize_py_async_support", "poll_loop", "hms_sync._component")


def _purge():
    for name in list(sys.modules):
        if any(name == g or name.startswith(g + ".") for g in GENERATED):
            del sys.modules[name]


@pytest.fixture
def bindings(tmp_path, monkeypatch):
    """Loads the bindings of a world and hms_sync._component on them; returns (component, wit
    types module, log lines, config)."""
    host, on_unexpected = hms_sync._host, run.on_unexpected

    def load(world):
        out = tmp_path / world
        command = [
            sys.executable, "-c",
            "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
            "-d", str(wit_dir()), "-w", world, "bindings", str(out),
        ]
        subprocess.run(command, check=True, capture_output=True)
        _purge()
        monkeypatch.syspath_prepend(str(out))
        wit_log = importlib.import_module("wit_world.imports.log")
        wit_config = importlib.import_module("wit_world.imports.config")
        lines, settings = [], {"b": "2", "a": "1"}
        monkeypatch.setattr(wit_log, "log", lambda level, message: lines.append((level, message)))
        monkeypatch.setattr(wit_config, "get", settings.get)
        monkeypatch.setattr(wit_config, "entries", lambda: sorted(settings.items()))
        component = importlib.import_module("hms_sync._component")
        types = importlib.import_module("wit_world.imports.types")
        return component, types, lines, wit_log

    yield load
    _purge()
    hms_sync._set_host(host)
    run.on_unexpected = on_unexpected


def wit_event(types, payload, **fields):
    values = dict(id="e-1", event_type="t", origin="state", key=None, version=None, timestamp=0,
                  content_type="application/json", payload=payload, headers=[types.Header("x-a", "b")])
    values.update(fields)
    return types.Event(**values)


def test_a_transformer_returns_bytes_and_fails_with_the_wit_error(bindings, capsys):
    component, types, lines, wit_log = bindings("transformer")
    from componentize_py_types import Err

    seen = []

    def transform(e):
        seen.append(e)
        log.info("entries", config.entries(), config.get("a"))
        if e.payload == b"fail":
            raise rejected("no")
        if e.payload == b"bug":
            return {}["missing"]
        return {"rate": 0.0725}

    Transform = component.transformer(plugin(transform=transform))
    assert Transform.__name__ == "Transform"
    instance = Transform()
    assert instance.transform(wit_event(types, b"{}", version=7, key="k")) == b'{"rate":0.0725}'
    # The plugin sees the SDK's event, not the generated one.
    assert isinstance(seen[0], hms_sync.Event)
    assert (seen[0].version, seen[0].key, seen[0].headers) == (7, "k", [hms_sync.Header("x-a", "b")])
    assert lines == [(wit_log.Level.INFO, 'entries [["a", "1"], ["b", "2"]] 1')]
    with pytest.raises(Err) as failed:
        instance.transform(wit_event(types, b"fail"))
    assert failed.value.value == types.Error(types.ErrorKind.REJECTED, "no")
    with pytest.raises(Err) as failed:
        instance.transform(wit_event(types, b"bug"))
    assert failed.value.value.kind == types.ErrorKind.INTERNAL
    assert failed.value.value.message.startswith("KeyError: 'missing' (at test_component.py:")
    # The traceback goes to stderr, which the engine records; the SDK's own frames are left out.
    err = capsys.readouterr().err
    assert "KeyError: 'missing'" in err and "hms_sync" not in err


def test_a_handler_returns_the_wit_actions(bindings):
    component, types, _, _ = bindings("handler")
    from componentize_py_types import Err

    def handle(e):
        if e.payload == b"none":
            return None
        if e.payload == b"bad":
            return [emit("t", {}, version=-1)]
        return [
            emit("tax.rate.updated", {"rate": 1}, key="tax-rate/2025", version=3, timestamp=-5),
            deliver("state", b"raw", headers={"X-Agency": "irs"}),
            drop("why"),
        ]

    instance = component.handler(plugin(handle=handle))()
    assert instance.handle(wit_event(types, b"{}")) == [
        types.Action_Emit(types.Emission("tax.rate.updated", b'{"rate":1}', "application/json", "tax-rate/2025", 3, -5)),
        types.Action_Deliver(types.Delivery("state", b"raw", None, [types.Header("X-Agency", "irs")], None, None, None)),
        types.Action_Drop("why"),
    ]
    assert instance.handle(wit_event(types, b"none")) == []
    with pytest.raises(Err) as failed:
        instance.handle(wit_event(types, b"bad"))
    assert failed.value.value == types.Error(types.ErrorKind.INTERNAL, "the version -1 is out of range: 0 to 18446744073709551615")


def test_a_resolver_returns_the_wit_resolution(bindings):
    component, types, _, _ = bindings("resolver")
    resolve_types = importlib.import_module("wit_world.exports.resolve")

    def resolve(current, incoming):
        assert isinstance(current, hms_sync.Entity)
        if current.payload == incoming.payload:
            return keep()
        if incoming.version > current.version:
            return replace()
        return merged({"from": current.event_id})

    instance = component.resolver(plugin(resolve=resolve))()

    def entity(version, payload):
        return resolve_types.Entity("k", version, 0, f"e-{version}", "application/json", payload)

    assert instance.resolve(entity(1, b"a"), entity(2, b"a")) == resolve_types.Resolution_Keep()
    assert instance.resolve(entity(1, b"a"), entity(2, b"b")) == resolve_types.Resolution_Replace()
    assert instance.resolve(entity(3, b"a"), entity(2, b"b")) == resolve_types.Resolution_Merged(b'{"from":"e-3"}')
