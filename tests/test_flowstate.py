"""The recorded flow layout is one table (`fastproxy.io.flowstate`): ``HTTPFlow.get_state``,
the recorder's snapshot and the C encoder agree with it, and recording's writer process
imports nothing from the proxy."""

import ast
import pathlib
import subprocess
import sys

import pytest

from fastproxy.flow import FLOW_FORMAT_VERSION, Error
from fastproxy.io import _encode, flowstate, tnetstring
from fastproxy.io.recorder import flow_state
from tests.test_flowfile import make_flow

IO = pathlib.Path(flowstate.__file__).parent


def test_get_state_and_the_recorders_snapshot_have_the_tables_keys_in_order():
    flow = make_flow()
    flow.error = Error("boom", 1.5)
    state = flow.get_state()
    assert list(state) == list(flowstate.HTTP_FLOW)
    assert list(state["request"]) == list(flowstate.REQUEST)
    assert list(state["response"]) == list(flowstate.RESPONSE)
    assert list(state["error"]) == list(flowstate.ERROR)
    assert state["version"] == flowstate.FLOW_FORMAT_VERSION == FLOW_FORMAT_VERSION
    assert flow_state(flow) == {**state, "client_conn": None, "server_conn": None}
    assert list(flow_state(flow)) == list(flowstate.HTTP_FLOW)


def test_the_encoder_and_the_table_agree():
    """What `_encode` checks at import, run again: its fields are the table's, and its
    record for a sample exchange is `exchange_state`'s, key for key and in order."""
    names = tuple(sorted(_encode.FIELD_NUMBERS, key=_encode.FIELD_NUMBERS.get))
    assert names == flowstate.EXCHANGE_NAMES
    encoded = _encode.encode_exchange(flowstate.SAMPLE, tnetstring.dumps({"id": "c"}),
                                      tnetstring.dumps({"id": "s"}))
    expected = flowstate.exchange_state(flowstate.SAMPLE, {"id": "c"}, {"id": "s"}, None)
    written = tnetstring.loads(encoded)
    expected["id"] = written["id"]
    assert encoded == tnetstring.dumps(expected)  # byte for byte


def test_the_check_catches_an_encoder_that_disagrees():
    good_kinds = b"".join(
        (types * 3)[:3].encode() for _, types in flowstate.EXCHANGE)
    names = flowstate.EXCHANGE_NAMES
    flowstate.check_encoder(_encode.encode_exchange, good_kinds, names)  # agrees
    swapped = (names[1], names[0]) + names[2:]
    with pytest.raises(RuntimeError, match="exchange fields"):
        flowstate.check_encoder(_encode.encode_exchange, good_kinds, swapped)
    with pytest.raises(RuntimeError, match="'port'"):
        flowstate.check_encoder(_encode.encode_exchange, good_kinds.replace(b"iii", b"ddd", 1),
                                names)

    def renamed(data, client, server):  # an encoder writing a key the layout lacks
        return _encode.encode_exchange(data, client, server).replace(
            b"6:method;", b"6:methox;")

    with pytest.raises(RuntimeError, match="keys"):
        flowstate.check_encoder(renamed, good_kinds, names)

    def other_status(data, client, server):  # an encoder writing a field from another
        data = list(data)
        data[names.index("status")] = 200
        return _encode.encode_exchange(tuple(data), client, server)

    with pytest.raises(RuntimeError, match="status_code"):
        flowstate.check_encoder(other_status, good_kinds, names)


def test_no_module_of_io_imports_the_proxy():
    for path in IO.glob("*.py*"):
        if path.suffix not in (".py", ".pyx", ".pxd"):
            continue
        text = path.read_text()
        if path.suffix == ".py":
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ImportFrom):
                    assert not (node.module or "").startswith("fastproxy.proxy"), path
                elif isinstance(node, ast.Import):
                    assert not any(a.name.startswith("fastproxy.proxy") for a in node.names)
        assert "fastproxy.proxy import" not in text and "from fastproxy.proxy." not in text, path


def test_the_writer_process_imports_nothing_from_the_proxy():
    code = ("import sys, fastproxy.io.writer; "
            "print(sorted(m for m in sys.modules if m.startswith('fastproxy.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    modules = ast.literal_eval(out)
    assert "fastproxy.io.writer" in modules
    assert not [m for m in modules if m.startswith(("fastproxy.proxy", "fastproxy.connection",
                                                    "fastproxy.flow", "fastproxy.http"))]


def test_no_private_cpython_internals_in_recording():
    for path in IO.glob("*.pyx"):
        text = path.read_text()
        assert "ma_version_tag" not in text and "_PyObject_GetDictPtr" not in text, path
