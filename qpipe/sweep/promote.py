"""A trial as a full run, and a whole sweep replayed.

:func:`promote` re-runs one trial through the ordinary single-run path (:func:`qpipe.run`):
a run folder, ``report.html`` and the usual ledger records. Its metrics equal the trial's row
(the batched evaluator agrees with the single-run accounting, which its own tests prove). The
sweep's manifest remembers ``trial -> run_id`` so ``sweep.html`` can link to the run.

:func:`replay_sweep` runs the recorded sweep again (same grid, config, data) as a new sweep and
compares the two summaries' :func:`~qpipe.sweep.summary.results_digest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from qpipe.config import ThreadSafeConfig
from qpipe.errors import ConfigError, ReplayError
from qpipe.store import open_ipc
from qpipe.sweep.grid import Grid
from qpipe.sweep.page import write_page
from qpipe.sweep.resume import SweepFolder
from qpipe.sweep.summary import results_digest

__all__ = ["ReplaySweepReport", "promote", "replay_sweep", "trial_config"]


def _load(out: Path, sweep_id: str) -> tuple[SweepFolder, dict[str, Any], ThreadSafeConfig]:
    folder = SweepFolder.under(out, sweep_id)
    manifest = folder.manifest()
    try:
        cfg = ThreadSafeConfig.from_toml(folder.path / "config.toml")
    except (OSError, ConfigError) as exc:
        msg = f"sweep `{sweep_id}`: cannot read its `config.toml`: {exc}"
        raise ConfigError(msg) from None
    return folder, manifest, cfg


def trial_config(cfg: ThreadSafeConfig, grid: Grid, trial: int) -> ThreadSafeConfig:
    """The config of ``trial``: the base config (no ``[sweep]``) with the trial's params."""
    if not 0 <= trial < grid.n_trials:
        msg = f"trial {trial} is not in the sweep (trials 0 to {grid.n_trials - 1})"
        raise ConfigError(msg)
    sections: dict[str, dict[str, Any]] = {}
    for key, value in grid.params(trial).items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    return cfg.replace(sweep={}, **sections)


def promote(
    sweep_id: str,
    trial: int,
    *,
    out: str | Path = "runs",
    ledger: str | Path | None = None,
    argv: list[str] | None = None,
) -> Any:
    """Run trial ``trial`` of sweep ``sweep_id`` as a full run; return its ``RunResult``.

    Raises
    ------
    ConfigError
        If the sweep or the trial does not exist.
    ReplayError
        If the prices are no longer those the sweep evaluated (data digest differs).
    """
    from qpipe.runs import run

    out = Path(out)
    folder, manifest, cfg = _load(out, sweep_id)
    grid = Grid.from_json(manifest["grid"])
    tcfg = trial_config(cfg, grid, trial)
    result = run(
        tcfg,
        out=out,
        ledger=ledger,
        report=True,
        argv=argv if argv is not None else ["sweep", "promote", sweep_id, str(trial)],
    )
    prices = result.refs.get("prices")
    if prices is not None and prices.digest != manifest.get("data_digest"):
        msg = (
            f"the prices changed since sweep `{sweep_id}` (digest {prices.digest[:12]} != "
            f"{str(manifest.get('data_digest'))[:12]}); run {result.run_id} used the new ones"
        )
        raise ReplayError(msg)
    promoted = {**manifest.get("promoted", {}), str(trial): result.run_id}
    folder.write_manifest({**manifest, "promoted": promoted})
    summary = folder.path / "summary.arrow"
    if summary.exists():  # the page links the trial to its report from now on
        write_page(folder, open_ipc(summary), grid.keys, str(manifest.get("metric", "sharpe")))
    return result


def trial_row(out: str | Path, sweep_id: str, trial: int) -> dict[str, Any]:
    """Trial ``trial``'s row of the sweep's ``summary.arrow``."""
    folder = SweepFolder.under(Path(out), sweep_id)
    frame = open_ipc(folder.path / "summary.arrow").filter(pl.col("trial") == trial)
    if frame.height != 1:
        msg = f"trial {trial} has no row in sweep `{sweep_id}`'s summary"
        raise ConfigError(msg)
    return frame.row(0, named=True)


@dataclass(frozen=True)
class ReplaySweepReport:
    """The recorded and replayed sweeps, and their results digests."""

    sweep_id: str
    replay_id: str
    recorded: str
    replayed: str

    @property
    def identical(self) -> bool:
        return self.recorded == self.replayed


def replay_sweep(
    sweep_id: str,
    *,
    out: str | Path = "runs",
    ledger: str | Path | None = None,
    engine: Any = None,
) -> ReplaySweepReport:
    """Run sweep ``sweep_id`` again as a new sweep and compare the results digests."""
    from qpipe.sweep.run import run_sweep

    out = Path(out)
    folder, manifest, cfg = _load(out, sweep_id)
    if manifest.get("state") != "finished":
        msg = f"sweep `{sweep_id}` did not finish; resume it with `--resume {sweep_id}` first"
        raise ReplayError(msg)
    recorded = results_digest(open_ipc(folder.path / "summary.arrow"))
    grid = Grid.from_json(manifest["grid"])
    again = run_sweep(
        cfg,
        grid,
        out=out,
        ledger=ledger,
        engine=engine,
        auto_resume=False,
        evaluator=manifest.get("evaluator", "qpipe.backtest.batch"),
        argv=["replay", sweep_id],
    )
    return ReplaySweepReport(sweep_id, again.sweep_id, recorded, again.results_digest)
