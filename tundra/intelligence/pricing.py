"""A pinned, local price table (USD per million tokens) for ``estimated_spend_usd``. No network.

Matched by substring of the model id, most specific first (``gpt-4o-mini`` before ``gpt-4o``);
OpenRouter's ``vendor/model`` names match too. Unknown and local models cost 0.
"""

from __future__ import annotations

__all__ = ["PRICES", "price_for", "estimate_cost"]

# (substring, input $/Mtok, output $/Mtok) -- list prices as of 2025.
PRICES: tuple[tuple[str, float, float], ...] = (
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-haiku-4", 0.8, 4.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("claude-3-5-sonnet", 3.0, 15.0),
    ("gpt-4o-mini", 0.15, 0.6),
    ("gpt-4o", 2.5, 10.0),
    ("o3-mini", 1.1, 4.4),
)


def price_for(model: str) -> tuple[float, float] | None:
    m = model.lower()
    for key, pin, pout in PRICES:
        if key in m:
            return pin, pout
    return None


def estimate_cost(model: str, input_tokens: int, output_tokens: int, *, local: bool = False) -> float:
    if local:
        return 0.0
    p = price_for(model)
    if p is None:
        return 0.0
    return (input_tokens * p[0] + output_tokens * p[1]) / 1_000_000
