import asyncio
import os

import pytest

from fastproxy.io import tnetstring
from fastproxy.io.flowfile import FlowReader
from fastproxy.io.recorder import TRUNCATED_KEY, Recorder, truncate_bodies
from fastproxy.addons.save import Save, worker_path
from fastproxy.options import Options, OptionsError
from fastproxy.addonmanager import Loader
from tests.test_flowfile import make_flow


def read_all(path):
    with open(path, "rb") as fo:
        reader = FlowReader(fo)
        flows = list(reader.stream())
    assert reader.error is None
    return flows


def test_close_flushes_everything(tmp_path):
    path = str(tmp_path / "rec.flows")
    errors = []
    rec = Recorder(path, on_error=errors.append)
    flows = [make_flow() for _ in range(2000)]
    for f in flows:
        rec.add(f.get_state())
    rec.close()
    rec.close()  # idempotent
    assert [f.id for f in read_all(path)] == [f.id for f in flows]
    assert errors == []


def test_unwritable_path_fails_at_start(tmp_path):
    with pytest.raises(OSError):
        Recorder(str(tmp_path / "missing-dir" / "x.flows"), on_error=print)


def test_disk_full_is_reported_not_raised():
    errors = []
    rec = Recorder("/dev/full", on_error=errors.append)
    rec.add(make_flow().get_state())
    rec.close()
    assert len(errors) == 1 and "/dev/full" in errors[0]


def test_unserializable_flow_is_reported_and_skipped(tmp_path):
    path = str(tmp_path / "rec.flows")
    errors = []
    rec = Recorder(path, on_error=errors.append)
    bad, good = make_flow(), make_flow()
    state = bad.get_state()
    state["metadata"]["obj"] = object()
    rec.add(state)
    rec.add(good.get_state())
    rec.close()
    assert [f.id for f in read_all(path)] == [good.id]
    assert "cannot record flow" in errors[0]


def test_append_cuts_a_torn_tail_first(tmp_path):
    path = str(tmp_path / "rec.flows")
    first, second = make_flow(), make_flow()
    with open(path, "wb") as fo:
        data = tnetstring.dumps(first.get_state())
        fo.write(data + data[:40])  # as after kill -9 in the middle of a write
    rec = Recorder(path, append=True, on_error=print)
    rec.add(second.get_state())
    rec.close()
    assert [f.id for f in read_all(path)] == [first.id, second.id]


def test_bodies_over_the_limit_are_truncated_and_marked(tmp_path):
    path = str(tmp_path / "rec.flows")
    flow = make_flow(body=b"x" * 1000)
    rec = Recorder(path, body_limit=100, on_error=print)
    rec.add(flow.get_state())
    rec.close()
    [read] = read_all(path)
    assert read.response.raw_content == b"x" * 100
    assert read.request.raw_content == flow.request.raw_content  # under the limit
    assert read.metadata[TRUNCATED_KEY] == {"response": 1000}
    assert "response body truncated to 100 of 1000 bytes" in read.comment
    assert flow.response.raw_content == b"x" * 1000  # the live flow is untouched


def test_truncate_bodies_leaves_small_flows_alone():
    state = make_flow().get_state()
    before = dict(state)
    truncate_bodies(state, 1 << 20)
    assert state == before


def make_save(tmp_path, **values):
    options = Options()
    save = Save()
    save.load(Loader(options))
    options.update(**values)
    save.configure(options, options.keys())
    return save, options


def test_save_records_each_flow_once(tmp_path):
    path = str(tmp_path / "save.flows")
    save, _ = make_save(tmp_path, save_stream_file=path)
    done = make_flow()
    failed_late = make_flow(error="client went away")  # complete response, then an error
    failed_early = make_flow(response=False, error="connect failed")

    async def hooks():
        save.response(done)
        save.response(failed_late)
        save.error(failed_late)
        save.error(failed_early)

    asyncio.run(hooks())
    save.done()
    assert [f.id for f in read_all(path)] == [done.id, failed_late.id, failed_early.id]


def test_save_appends_with_plus(tmp_path):
    path = str(tmp_path / "save.flows")
    for _ in range(2):
        save, _ = make_save(tmp_path, save_stream_file="+" + path)
        save.response(make_flow())
        save.done()
    assert len(read_all(path)) == 2


def test_save_unwritable_path_is_an_options_error(tmp_path):
    with pytest.raises(OptionsError, match="cannot record flows"):
        make_save(tmp_path, save_stream_file=str(tmp_path / "nope" / "x.flows"))


def test_save_per_worker_files(tmp_path):
    path = str(tmp_path / "w.flows")
    save, _ = make_save(tmp_path, save_stream_file=path, workers=3, worker_index=2)
    save.response(make_flow())
    save.done()
    assert os.path.exists(path + ".w2") and not os.path.exists(path)
    assert worker_path(path, 1, 0) == path


def test_snapshot_is_get_state_and_the_writer_writes_identical_bytes():
    """What the loop hands over, rebuilt and encoded by the writer (connection states and
    header fields encoded once, reused), is byte for byte ``dumps(flow.get_state())``."""
    import io
    import pickle

    from fastproxy.io.recorder import Snapshots
    from fastproxy.io.writer import Writer, split_messages

    flows = [make_flow(), make_flow(response=False, error="connect failed"), make_flow()]
    flows[2].client_conn = flows[0].client_conn  # a keep-alive connection's second flow
    flows[2].server_conn = flows[0].server_conn
    for flow in flows:
        state = Snapshots.flow_state(flow)
        assert state == {**flow.get_state(), "client_conn": None, "server_conn": None}
    sent = bytearray()
    snapshots = Snapshots(lambda m: sent.extend(
        len(p := pickle.dumps(m)).to_bytes(4, "big") + p))
    for flow in flows:
        snapshots.send_flow(flow)
    conn_messages = [m for m in map(pickle.loads, split_messages(bytearray(sent)))
                     if m[0] == "conn"]
    assert len(conn_messages) == 4  # two connections each for flows 0 and 1, none for 2

    written = []

    class Sink(Writer):
        def write(self, data, count):
            written.append(data)

    writer = Sink(os.open(os.devnull, os.O_WRONLY), out=io.StringIO())
    writer.handle(split_messages(sent))
    assert written == [b"".join(tnetstring.dumps(f.get_state()) for f in flows)]
    os.close(writer.fd)
