"""The stock script with its declared records replaced by the same mapping written as a Lua loop
over response.body: the reference that the declared mapping must match record for record
(tests/e2e/test_records.py), and the Lua-tables figure of `make bench`."""
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "stock_prices.lua"
DECLARED_CALL = "    return BARS:map(ctx, response)\n"
LUA_LOOP = """\
    local records = {}
    for i, bar in ipairs(response.body.results or {}) do
      records[i] = {
        date = date.from_ms(bar.t, NEW_YORK),
        stock_ticker = ctx.partition,
        price = bar.c,
        open = bar.o,
        high = bar.h,
        low = bar.l,
        close = bar.c,
        volume = bar.v,
        vwap = bar.vw,
        transactions = bar.n and math.tointeger(bar.n) or nil,
      }
    end
    return records, response.body.next_url
"""


def lua_loop_script(path: Path) -> Path:
    """Writes the Lua-loop variant of scripts/stock_prices.lua to path and returns path."""
    text = SCRIPT.read_text(encoding="utf-8")
    assert text.count(DECLARED_CALL) == 1, f"{DECLARED_CALL!r} is not in {SCRIPT.name} exactly once"
    path.write_text(text.replace(DECLARED_CALL, LUA_LOOP), encoding="utf-8")
    return path
