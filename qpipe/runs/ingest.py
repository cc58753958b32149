"""The ingest phase: prices (and a benchmark, and external weights) into the store, Tier 1.

Each input is recorded as a ``dataset`` record; prices and a benchmark also get a Tier 1
``validation`` record, with the real outcome: a failing schema is recorded (``passed: false`` and
its failures) before the error ends the run. Tier 1 is skipped for a file whose digest the ledger
shows already passed (``validation.skip_validated``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from qpipe._canonical import canonical_digest
from qpipe._fs import write_bytes_atomic
from qpipe.config import ThreadSafeConfig
from qpipe.errors import ConfigError, QpipeError, SchemaFailure, SchemaValidationError
from qpipe.ingest import (
    IngestResult,
    file_digest,
    ingest_frame,
    ingest_prices,
    ingest_weights,
)
from qpipe.ingest.membership import ingest_membership
from qpipe.ingest.named import is_store_source, open_named
from qpipe.ledger import payloads as p
from qpipe.runs.env import RunEnv, failure_records
from qpipe.stages.universe import MEMBER_COLUMN, mark_members
from qpipe.store import ArrowStore

__all__ = ["Inputs", "builtin_dataset", "ingest"]


@dataclass(frozen=True)
class Inputs:
    """The stored inputs of a run, as ingestion results (refs plus what the ledger records)."""

    prices: IngestResult
    benchmark: IngestResult | None
    weights: IngestResult | None


def builtin_dataset(d, store: ArrowStore) -> IngestResult:
    """The built-in universe: generated and validated on first use, then read from the store.

    ``<store>/index/builtin-<key>.json`` maps the universe's parameters (``d`` is the config's
    ``[data]`` table) to its stored digest; the index name is a hash, so nothing from the config
    becomes a path. A damaged entry is regenerated, never trusted.
    """
    from qpipe.data.universe import builtin_universe

    params = {"symbols": d.symbols, "start": d.start, "end": d.end, "seed": d.seed}
    key = canonical_digest(params)[:32]
    index = store.root / "index" / f"builtin-{key}.json"
    start = time.perf_counter()
    try:
        ref = store.ref_for(json.loads(index.read_text())["digest"])
        if ref is not None:
            store.verify(ref)
    except (OSError, ValueError, KeyError, TypeError, QpipeError):
        ref = None
    if ref is not None:
        seconds = time.perf_counter() - start
        return IngestResult(ref, "builtin", ref.digest, ref.rows, d.symbols, seconds, False)
    res = ingest_frame(builtin_universe(**params), store, name="builtin", validate=True)
    index = store.subfolder("index") / index.name  # never through a symlink
    write_bytes_atomic(index, json.dumps({"digest": res.ref.digest, "params": params}).encode())
    return res


def _validated_digests(env: RunEnv) -> set[str]:
    """Source digests whose Tier 1 validation passed in an earlier run of this ledger."""
    if not env.ledger.path.exists():
        return set()
    return {
        r["data"]["source_digest"]
        for r in env.ledger.records()
        if r["kind"] == "validation"
        and r["data"].get("tier") == "tier1"
        and r["data"].get("passed")
        and not r["data"].get("skipped")
        and r["data"].get("source_digest")
    }


def stored_prices(cfg: ThreadSafeConfig, store: ArrowStore) -> IngestResult:
    """The prices a run of ``cfg`` reads, for work outside a run (sweeps, research): the
    built-in universe, a ``store:NAME`` dataset, or a file (Tier 1 unless validation is off)."""
    source = cfg.data.source
    if source == "builtin":
        return builtin_dataset(cfg.data, store)
    if is_store_source(source):  # `store:NAME`, imported (and validated) by `data import`
        return open_named(source, store)
    return ingest_prices(source, store, validate=cfg.validation.mode != "none")


def _read_prices(env: RunEnv, source: str, validated: set[str]) -> IngestResult:
    if source == "builtin" or is_store_source(source):
        return stored_prices(env.cfg, env.store)
    mode = env.cfg.validation.mode
    skip = env.cfg.validation.skip_validated and mode != "none"
    # Hashed here only when the ledger has validated digests to compare with, and then only
    # once: the ingestion takes the digest instead of hashing the file again.
    digest = file_digest(source) if skip and validated else None
    validate = mode != "none" and digest not in validated
    return ingest_prices(
        source, env.store, quarantine_dir=env.run_dir, validate=validate, source_digest=digest
    )


def _prices(
    env: RunEnv, name: str, source: str, validated: set[str], point_in_time: bool | None = None
) -> IngestResult:
    """Ingest one prices input; record its dataset and its Tier 1 outcome, pass or fail."""
    start = time.perf_counter()
    try:
        res = _read_prices(env, source, validated)
    except SchemaValidationError as exc:
        env.recorder.validation(
            p.Validation(
                tier="tier1",
                target=name,
                passed=False,
                skipped=False,
                seconds=round(time.perf_counter() - start, 6),
                failures=failure_records(exc.failures),
                source_digest=_digest_or_none(source),
            )
        )
        raise
    env.recorder.dataset(_dataset_record(name, res, point_in_time))
    env.recorder.validation(
        p.Validation(
            tier="tier1",
            target=name,
            passed=True,
            skipped=not res.validated,
            seconds=round(time.perf_counter() - start, 6),
            source_digest=res.source_digest,
        )
    )
    return res


def _digest_or_none(source: str) -> str | None:
    try:
        return file_digest(source)
    except (OSError, QpipeError):
        return None


def _dataset_record(name: str, res: IngestResult, point_in_time: bool | None = None) -> p.Dataset:
    ref = res.ref.to_json()
    return p.Dataset(
        name=name,
        path=ref["path"],
        digest=ref["digest"],
        rows=ref["rows"],
        schema=ref["schema"],
        source=res.source,
        source_digest=res.source_digest,
        point_in_time=point_in_time,
    )


def _check_universe(env: RunEnv, prices: IngestResult) -> None:
    """Config limits that need the data: ``top_n`` cannot exceed the number of symbols."""
    a = env.cfg.allocation
    if a.scheme in ("top_n", "inverse_vol") and a.top_n > prices.symbols:
        msg = (
            f"`allocation.top_n` ({a.top_n}) is larger than the universe: "
            f"`{prices.source}` has {prices.symbols} symbols; set `allocation.top_n` "
            f"to at most {prices.symbols}"
        )
        raise ConfigError(msg)


def _mark_members(env: RunEnv, prices: IngestResult) -> IngestResult:
    """``data.membership``: store and record the membership, mark ``in_universe`` on the prices.

    The strategy then ranks only members (:func:`~qpipe.stages.universe.members_only`); the
    marked prices are what every later phase, the point-in-time audit included, reads.
    """
    d = env.cfg.data
    if d.weights:
        msg = (
            "`data.membership` chooses the strategy's universe; external weights "
            f"(`data.weights` = `{d.weights}`) are used as given: drop one of the two"
        )
        raise ConfigError(msg)
    members = ingest_membership(d.membership, env.store, quarantine_dir=env.run_dir)
    env.recorder.dataset(_dataset_record("membership", members))
    frame = env.store.open(prices.ref)
    if MEMBER_COLUMN in frame.columns:
        msg = f"prices `{prices.source}` already have a column `{MEMBER_COLUMN}`; rename it"
        raise SchemaValidationError(
            msg,
            [SchemaFailure(f"column `{MEMBER_COLUMN}` is reserved", MEMBER_COLUMN, kind="column")],
        )
    marked = mark_members(frame, env.store.open(members.ref))
    return dataclasses.replace(prices, ref=env.store.put(marked))


def ingest(env: RunEnv) -> Inputs:
    """Prices, then the benchmark, then external weights, each recorded as it lands."""
    d = env.cfg.data
    validated = _validated_digests(env)
    point_in_time = bool(d.membership) or d.source == "builtin"
    prices = _prices(env, "prices", d.source, validated, point_in_time)
    if d.membership:
        prices = _mark_members(env, prices)
    env.emit("ingested", {"rows": prices.rows})
    if not d.weights:
        _check_universe(env, prices)
    bench = _prices(env, "benchmark", d.benchmark, validated) if d.benchmark else None
    weights = None
    if d.weights:
        weights = ingest_weights(d.weights, env.store)
        env.recorder.dataset(_dataset_record("weights", weights))
    return Inputs(prices, bench, weights)
