"""Chunk planning: every pending trial exactly once, done ones skipped, sizes aimed at 0.2-2 s."""

from __future__ import annotations

from hypothesis import given, settings, target
from hypothesis import strategies as st

from qpipe.sweep.plan import ChunkPlanner


@settings(deadline=None, max_examples=60)
@given(
    n=st.integers(0, 400),
    done=st.sets(st.integers(0, 399)),
    workers=st.integers(1, 8),
    rate=st.floats(1e-5, 0.5),
)
def test_chunks_cover_every_pending_position_once(n, done, workers, rate):
    planner = ChunkPlanner(n, lambda p: p in done, first_index=7, workers=workers)
    seen: list[int] = []
    indices = []
    for chunk in planner:
        indices.append(chunk.index)
        seen.extend(chunk.positions())
        planner.observe(chunk.size, chunk.size * rate)
    expected = [p for p in range(n) if p not in done]
    target(float(len(expected)))
    assert seen == expected
    assert indices == list(range(7, 7 + len(indices)))


def test_chunk_size_grows_until_a_task_takes_about_the_aim():
    planner = ChunkPlanner(1_000_000, aim=0.6, initial=8)
    rate = 0.001  # seconds per trial
    sizes = []
    for _ in range(8):
        chunk = planner.take()
        assert chunk is not None
        sizes.append(chunk.size)
        planner.observe(chunk.size, chunk.size * rate)
    assert sizes[0] == 8 and sizes == sorted(sizes)
    assert 0.2 <= sizes[-1] * rate <= 2.0, sizes


def test_a_slow_first_chunk_does_not_shrink_the_next_and_the_size_comes_down_for_slow_trials():
    planner = ChunkPlanner(10_000, aim=0.6, initial=8)
    first = planner.take()
    planner.observe(first.size, 30.0)  # JIT compilation in the first task
    assert planner.take().size == 8
    planner.observe(8, 8 * 0.3)  # 0.3 s per trial: two trials make 0.6 s
    assert planner.take().size == 2


def test_the_tail_is_split_so_every_worker_has_work():
    planner = ChunkPlanner(40, workers=4, initial=1000)
    sizes = [c.size for c in planner]
    assert sizes[0] == 5 and sum(sizes) == 40 and len(sizes) >= 8
