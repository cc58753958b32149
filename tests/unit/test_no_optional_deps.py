"""`import qpipe` and a local run work when ray, mlflow and prefect cannot be imported.

A fresh interpreter gets a ``sys.meta_path`` finder that refuses those packages, as if they
were not installed; asking for the Ray engine or the Prefect wrapper then raises
``OptionalDependencyError`` with the install hint.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys

    BLOCKED = ("ray", "mlflow", "prefect")

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())

    import polars as pl
    import qpipe
    from qpipe.config import ThreadSafeConfig
    from qpipe.context import RunContext
    from qpipe.engines import make_engine
    from qpipe.errors import OptionalDependencyError
    from qpipe.stages.base import Pipeline, stage
    from qpipe.store import ArrowStore

    @stage(output="returns", shard="symbol")
    def rets(prices: pl.LazyFrame) -> pl.LazyFrame:
        return prices.sort("symbol", "date").with_columns(
            pl.col("close").pct_change().over("symbol").alias("ret")
        )

    store = ArrowStore(sys.argv[1] + "/store")
    prices = pl.DataFrame(
        {"date": [pl.date(2020, 1, d) for d in (1, 2, 3)] * 2,
         "symbol": ["A"] * 3 + ["B"] * 3,
         "close": [1.0, 1.1, 1.2, 2.0, 2.2, 2.1]}
    )
    done = qpipe.LocalEngine().run(
        Pipeline((rets.bind(),)), RunContext({"prices": store.put(prices)}), store
    )
    assert store.open(done.context["returns"]).height == 6

    from qpipe.api import run
    cfg = ThreadSafeConfig.default().replace(
        data={"symbols": 10, "start": "2020-01-01", "end": "2020-12-31"},
        strategy={"lookback": 21, "skip": 2}, allocation={"top_n": 3}, run={"report": False},
    )
    result = run(cfg, out=sys.argv[1] + "/runs")
    assert "sharpe" in result.metrics

    for attempt in (
        lambda: make_engine(cfg.replace(engine={"kind": "ray"})),
        lambda: __import__("qpipe.orchestration.prefect", fromlist=["as_flow"]).as_flow(
            Pipeline((rets.bind(),)), store=store
        ),
    ):
        try:
            attempt()
        except OptionalDependencyError as exc:
            assert "pip install 'qpipe[" in str(exc), exc
        else:
            raise AssertionError("an optional dependency was importable")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("ok")
    """
)


def test_qpipe_imports_and_runs_locally_without_ray_mlflow_or_prefect(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
