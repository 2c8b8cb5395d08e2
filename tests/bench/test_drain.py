"""bench.drain reads the piped sync to its end without keeping it, counting bytes and, when asked,
RECORD messages."""
import os
import random
import threading

import pytest

import bench

PIECES = [bench.RECORD_START, b'{"type":"REC', b'ORD"', b"x", b"\n", b'{"type":"STATE"}']


@pytest.mark.parametrize("seed", range(40))
def test_counts_what_a_whole_read_would_count(seed):
    rng = random.Random(seed)
    data = b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 400)))
    read_end, write_end = os.pipe()

    def write_in_random_pieces():
        i = 0
        while i < len(data):
            k = rng.randint(1, 40)
            os.write(write_end, data[i:i + k])
            i += k
        os.close(write_end)

    writer = threading.Thread(target=write_in_random_pieces)
    writer.start()
    try:
        assert bench.drain(read_end, True) == (len(data), data.count(bench.RECORD_START))
    finally:
        writer.join()
        os.close(read_end)


def test_without_counting_it_reads_everything():
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_end, bench.RECORD_START * 3000), os.close(write_end)))
    writer.start()
    try:
        assert bench.drain(read_end, False) == (len(bench.RECORD_START) * 3000, 0)
    finally:
        writer.join()
        os.close(read_end)


def test_a_marker_split_across_two_reads_counts_once():
    read_end, write_end = os.pipe()
    os.write(write_end, bench.RECORD_START[:7])
    writer = threading.Timer(0.05, lambda: (os.write(write_end, bench.RECORD_START[7:] + b"}\n"), os.close(write_end)))
    writer.start()
    try:
        assert bench.drain(read_end, True) == (len(bench.RECORD_START) + 2, 1)
    finally:
        writer.join()
        os.close(read_end)
