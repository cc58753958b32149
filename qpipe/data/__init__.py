"""Built-in data: the deterministic synthetic price universe."""

from qpipe.data.universe import builtin_universe, trading_days, universe_digest

__all__ = ["builtin_universe", "trading_days", "universe_digest"]
