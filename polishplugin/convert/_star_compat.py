"""Work-around for list blocks (``_rlnLabel value``) whose value is too wide for star.py's padding.

``star.write_star`` pads a list-block value to column 40 with no separator, so a value wider than
``40 - len(label) - 1`` characters (long paths) is glued to its label.  Until star.py adds a
separating space, such blocks are written as a one-row ``loop_`` table, which RELION's reader and
ours read the same way.
"""

from __future__ import annotations

import pandas as pd

from .star import format_value


def list_block(values: dict) -> dict | pd.DataFrame:
    """``values`` itself when every label/value pair is written separable, else a one-row table."""
    for label, value in values.items():
        if len(format_value(value)) >= max(1, 40 - len(label)):
            return pd.DataFrame({k: [v] for k, v in values.items()})
    return values
