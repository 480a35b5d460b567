"""The shared ring between the proxy and its writer process (fastproxy/io/_ring.pyx)."""
import mmap
import os

import pytest

from fastproxy.io._ring import HEADER, Ring


def new_ring(capacity: int) -> Ring:
    return Ring(mmap.mmap(-1, HEADER + capacity))


def test_put_as_far_as_there_is_room_and_take_in_order():
    ring = new_ring(10)
    assert ring.capacity == 10
    assert ring.put([b"abc", memoryview(b"defgh"), b"ijklm"]) == 10  # cut at the room
    assert ring.put([b"x"]) == 0  # full
    out = bytearray(4)
    assert ring.take(out) == 4 and out == b"abcd"
    assert ring.put([b"", b"KLMNOP"]) == 4  # the room the take made, around the end
    taken = bytearray(20)
    assert ring.take(taken) == 10 and taken[:10] == b"efghijKLMN"
    assert ring.take(taken) == 0
    assert ring.put([bytes(11)]) == 10  # empty again: all of it is room


def test_many_wraps_keep_every_byte():
    ring, sent, got = new_ring(7), os.urandom(1000), bytearray()
    out, at = bytearray(5), 0
    while len(got) < len(sent):
        at += ring.put([sent[at:at + 3]])
        got += out[:ring.take(out)]
    assert bytes(got) == sent


def test_two_processes_share_it():
    """The writer maps the ring by its file descriptor: what one process puts, the other
    takes."""
    fd = os.memfd_create("test-ring")
    os.ftruncate(fd, HEADER + 4096)
    producer = Ring(mmap.mmap(fd, HEADER + 4096))
    pid = os.fork()
    if pid == 0:
        consumer = Ring(mmap.mmap(fd, 0))
        out, got = bytearray(100), bytearray()
        while len(got) < 3000:
            got += out[:consumer.take(out)]
        os._exit(0 if bytes(got) == bytes(range(250)) * 12 else 1)
    data, at = bytes(range(250)) * 12, 0
    while at < len(data):
        at += producer.put([data[at:at + 700]])
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_mapping_without_room_for_data_is_refused():
    with pytest.raises(ValueError):
        Ring(mmap.mmap(-1, HEADER))
