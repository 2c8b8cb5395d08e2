"""Script faults and the sandbox (issue 5): broken copies of scripts/stock_prices.lua, made by
text substitution and passed with --script.

A fault in the script is a clean system_error naming file:line and the Lua message; endless
loops and runaway memory are stopped (the limits are lowered through SOURCE_LUA_MAX_INSTRUCTIONS
and SOURCE_LUA_MEMORY_MB to keep these tests fast); the restricted standard library refuses
what could touch the host; writing globals is allowed but cannot harm the runtime; print()
becomes a LOG message.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .conftest import STREAM, WRAPPED, line_of, sample_under_wrapper, script_copy, timing, utc

AFTER_CLOSE = utc(2022, 3, 11, 22, 0)
MARK = "--[[fault-here]]"
# Lower still under SOURCE_LUA_WRAPPER (valgrind), where every instruction and allocation is slow:
# the instruction limit must still come well before the CPU-time watchdog (limit / 2e7 + 1 s of
# CPU), which ends the process with _exit (so valgrind would report the Lua state as leaked).
LIMITS = {"SOURCE_LUA_MAX_INSTRUCTIONS": "1000000" if WRAPPED else "50000000",
          "SOURCE_LUA_MEMORY_MB": "16" if WRAPPED else "64"}

# Where code is inserted: after these lines of the script (each occurs once).
ANCHORS = {
    "top": 'local NEW_YORK = "America/New_York"\n',
    "partitions": "  local list = {}\n",
    "request": "  request = function(ctx)\n",
    "parse": "  parse = function(ctx, response)\n",
    "check": "  local ticker = tickers(config)[1]\n",
}


def broken(tmp_path, where: str, code: str, name: str = "broken.lua"):
    """A script copy with code (one line, marked) inserted at where."""
    anchor = ANCHORS[where]
    return script_copy(tmp_path, (anchor, anchor + code + " " + MARK + "\n"), name=name)


def position(script) -> str:
    """'broken.lua:LINE:' of the inserted code, as Lua writes it in error messages."""
    return f"{script.name}:{line_of(script, MARK)}:"


def the_error(result) -> dict:
    assert result.returncode == 1, result.describe()
    assert len(result.errors) == 1, result.describe()
    return result.errors[0]


def assert_system_error(result, *words) -> dict:
    error = the_error(result)
    assert error["failure_type"] == "system_error", result.describe()
    for word in words:
        assert word in error["message"], (word, error["message"])
    return error


def assert_read_failed(result, *words) -> dict:
    error = assert_system_error(result, *words)
    assert result.statuses[-1] == "INCOMPLETE", result.statuses
    assert result.messages[-1]["type"] == "TRACE" and result.messages[-1]["trace"]["type"] == "ERROR"
    return error


def read(connector, script, **kw):
    return connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script), **kw)


# --------------------------------------------------------------------------------------------
# syntax and runtime errors
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["spec", "check", "discover", "read"])
def test_syntax_error_names_file_and_line(connector, tmp_path, command):
    script = broken(tmp_path, "top", "local PAGE = = 1")
    flags = ("--script", script)
    if command == "spec":
        result = connector.spec(flags=flags)
    elif command == "check":
        result = connector.check(connector.config(), flags=flags)
    elif command == "discover":
        result = connector.discover(connector.config(), flags=flags)
    else:
        result = read(connector, script)
    assert_system_error(result, position(script), "unexpected symbol near '='")
    assert connector.server.log() == []


FAULT = "local fault_here = nil; fault_here.field = 1"
NIL_INDEX = "attempt to index a nil value (local 'fault_here')"


@pytest.mark.parametrize("where", ["parse", "request", "partitions"])
def test_runtime_error_in_a_read_names_file_line_and_message(connector, tmp_path, where):
    script = broken(tmp_path, where, FAULT)
    result = read(connector, script)
    error = assert_read_failed(result, position(script), NIL_INDEX)
    assert script.name in error.get("stack_trace", ""), error
    assert result.records == []


def test_runtime_error_at_load_time(connector, tmp_path):
    script = broken(tmp_path, "top", FAULT)
    assert_system_error(connector.spec(flags=("--script", script)), position(script), NIL_INDEX)


def test_runtime_error_in_check_fails_the_check_with_file_line(connector, tmp_path):
    script = broken(tmp_path, "check", FAULT)
    result = connector.check(connector.config(), flags=("--script", script), now=AFTER_CLOSE)
    assert result.returncode == 0, result.describe()
    status = result.connection_status
    assert status["status"] == "FAILED", status
    assert position(script) in status["message"] and NIL_INDEX in status["message"], status


def test_runtime_error_on_a_later_page_keeps_the_earlier_ones(paged_connector, tmp_path):
    """parse fails on the third page: the records and STATEs of the first two stand."""
    script = broken(tmp_path, "parse", "sl_pages = (sl_pages or 0) + 1; if sl_pages == 3 then error('page three') end")
    config = paged_connector.config(start_date="2021-06-01")
    result = paged_connector.read(config, now=AFTER_CLOSE, flags=("--script", script))
    assert_read_failed(result, position(script), "page three")
    assert len(result.records) == 2 * 50
    assert result.last_stream_state["tickers"]["TSLA"]["date"] == result.dates()[-1]


@pytest.mark.parametrize("failure_type", ["config_error", "transient_error", "system_error"])
def test_error_table_chooses_the_failure_type(connector, tmp_path, failure_type):
    script = broken(tmp_path, "parse", f'error({{failure_type = "{failure_type}", message = "ticker delisted"}})')
    result = read(connector, script)
    error = the_error(result)
    assert error["failure_type"] == failure_type, error
    assert "ticker delisted" in error["message"], error


@pytest.mark.parametrize("content,words", [
    ("return 42\n", ["must return a table", "number"]),
    ("", ["must return a table", "nil"]),
    ("return {}\n", ["spec"]),
], ids=["number", "empty-file", "empty-table"])
def test_script_of_the_wrong_shape(connector, tmp_path, content, words):
    script = tmp_path / "shape.lua"
    script.write_text(content)
    assert_system_error(connector.spec(flags=("--script", script)), *words)


def test_missing_script_is_an_error_naming_it(connector, tmp_path):
    result = connector.spec(flags=("--script", tmp_path / "no-such-script.lua"))
    error = the_error(result)
    assert "no-such-script.lua" in error["message"], error


# --------------------------------------------------------------------------------------------
# endless loops and runaway memory
# --------------------------------------------------------------------------------------------

LOOPS = {
    "plain": "while true do end",
    "pcall": "while true do pcall(function() while true do end end) end",
    "xpcall": "while true do xpcall(function() while true do end end, function(e) return e end) end",
    "coroutine": "while true do pcall(coroutine.wrap(function() while true do end end)) end",
    "string-work": "local n = 0 while true do n = #(('x'):rep(8) .. n) end",
}


@pytest.mark.parametrize("loop", sample_under_wrapper(list(LOOPS), keep=["plain", "pcall", "coroutine"]))
def test_endless_loop_is_stopped(connector, tmp_path, loop):
    script = broken(tmp_path, "parse", LOOPS[loop])
    result = read(connector, script, env=LIMITS, timeout=20)
    assert_read_failed(result, "instruction limit")
    assert result.records == []


def test_endless_loop_at_load_time_is_stopped(connector, tmp_path):
    script = broken(tmp_path, "top", LOOPS["pcall"])
    assert_system_error(connector.spec(flags=("--script", script), env=LIMITS, timeout=20), "instruction limit")


def test_endless_loop_in_check_fails_the_check(connector, tmp_path):
    script = broken(tmp_path, "check", LOOPS["plain"])
    result = connector.check(connector.config(), flags=("--script", script), env=LIMITS, timeout=20)
    assert result.connection_status["status"] == "FAILED"
    assert "instruction limit" in result.connection_status["message"]


RUNAWAY_MEMORY = {
    "table": "local t = {} while true do t[#t + 1] = {} end",
    "string-doubling": "local s = 'x' while true do s = s .. s end",
    "string-rep": "local s = string.rep('x', 1000000000)",
    "table-concat": "local t = {} for i = 1, 1e9 do t[i] = 'abcdefgh' end local s = table.concat(t)",
    "closures": "local fs = {} while true do local n = #fs fs[n + 1] = function() return n end end",
}


@pytest.mark.parametrize("kind", sample_under_wrapper(list(RUNAWAY_MEMORY), keep=["table", "string-rep"]))
def test_runaway_memory_is_stopped(connector, tmp_path, kind):
    script = broken(tmp_path, "parse", RUNAWAY_MEMORY[kind])
    # Enough instructions to reach the memory cap first, also with the wrapper's smaller budget.
    result = read(connector, script, env={**LIMITS, "SOURCE_LUA_MAX_INSTRUCTIONS": "50000000"}, timeout=20)
    assert_read_failed(result, "out of memory")


@timing
def test_runaway_memory_inside_pcall_is_stopped_promptly(connector, tmp_path):
    """Memory errors caught by pcall, again and again: still stopped (each caught error costs a
    full emergency GC, so the instruction budget hardly moves). The run's timeout is a hang guard."""
    script = broken(tmp_path, "parse",
                    "local t = {} while true do pcall(function() while true do t[#t + 1] = {} end end) end")
    result = read(connector, script, env=LIMITS, timeout=60)
    assert_read_failed(result)
    assert "memory" in result.errors[0]["message"] or "instruction limit" in result.errors[0]["message"]


@timing
def test_runaway_work_inside_one_library_call_is_stopped(connector, tmp_path):
    """A backtracking pattern runs for hours inside one string.find (C code, where the count
    hook never fires): it must be stopped like an endless loop, by its CPU budget (2 s here; the
    run's timeout is a hang guard)."""
    script = broken(tmp_path, "parse", "string.find(string.rep('a', 200), string.rep('a*', 5) .. 'b')")
    result = read(connector, script, env={**LIMITS, "SOURCE_LUA_CPU_SECONDS": "2"}, timeout=60)
    assert_read_failed(result, "more than 2 s of CPU in one call")
    # Written by the signal handler from a message laid out before the call: the stream's status
    # and the error, each stamped with the time the stuck call began (the clock is faked).
    status, error = result.messages[-2:]
    assert status["trace"]["stream_status"] == {"stream_descriptor": {"name": "stock_prices"},
                                                "status": "INCOMPLETE"}, result.describe()
    started = AFTER_CLOSE.timestamp() * 1000
    for message in (status, error):
        assert started <= message["trace"]["emitted_at"] <= started + result.elapsed * 1000 + 1000, message


@timing
def test_sigterm_stops_an_endless_loop(connector, tmp_path):
    """With the default budget (2e9 instructions: many seconds), SIGTERM ends the loop at once."""
    script = broken(tmp_path, "parse", "log.info('looping') while true do end")
    run = connector.start_read(connector.config(), now=AFTER_CLOSE, flags=("--script", script))
    run.wait_for(lambda m: m["type"] == "LOG" and m["log"]["message"] == "looping")
    run.send_signal(signal.SIGTERM)
    result = run.finish(timeout=20)
    assert result.returncode != 0
    assert result.statuses[-1] == "INCOMPLETE" and len(result.errors) == 1, result.describe()
    assert "cancel" in result.errors[0]["message"], result.errors


@timing
def test_sigterm_stops_a_call_stuck_inside_a_library_function(connector, tmp_path):
    """Inside C the count hook never runs, so it cannot see SIGTERM: the signal cuts the call's
    CPU budget to a second, and the watchdog ends the run with the stream INCOMPLETE and a
    cancellation (before, the run went on until its 402 s budget ran out)."""
    script = broken(tmp_path, "parse",
                    "log.info('looping') string.find(string.rep('a', 200000), string.rep('a*', 50) .. 'b')")
    run = connector.start_read(connector.config(), now=AFTER_CLOSE, flags=("--script", script))
    run.wait_for(lambda m: m["type"] == "LOG" and m["log"]["message"] == "looping")
    run.send_signal(signal.SIGTERM)
    result = run.finish(timeout=30)
    assert result.returncode != 0
    status, error = result.messages[-2:]
    assert status["trace"]["stream_status"]["status"] == "INCOMPLETE", result.describe()
    assert "cancelled" in error["trace"]["error"]["message"], result.describe()
    assert error["trace"]["error"]["failure_type"] == "transient_error", result.describe()


# --------------------------------------------------------------------------------------------
# the restricted standard library
# --------------------------------------------------------------------------------------------

def forbidden_calls(tmp_path) -> dict:
    """id: (code, words of the error message, file that must not exist afterwards or None)."""
    marker = tmp_path / "pwned"
    shell = f"touch {marker}"
    return {
        "os.execute": (f'os.execute("{shell}")', ["execute"], marker),
        "io.popen": (f'io.popen("{shell}")', ["io"], marker),
        "io.open": (f'io.open("{marker}", "w"):write("x")', ["io"], marker),
        "io.write": ('io.write("not protocol")', ["io"], None),
        "os.exit": ("os.exit(0)", ["exit"], None),
        "os.getenv": ('local home = os.getenv("HOME")', ["getenv"], None),
        "os.remove": (f'os.remove("{tmp_path / "keep"}")', ["remove"], None),
        "os.rename": (f'os.rename("{tmp_path / "keep"}", "{marker}")', ["rename"], marker),
        "os.tmpname": ("local name = os.tmpname()", ["tmpname"], None),
        "os.date": ('local now = os.date("%H")', ["date"], None),
        "require": ('local lfs = require("io")', ["require"], None),
        "package": ('package.loadlib("libc.so.6", "system")', ["package"], None),
        "debug": ("debug.sethook()", ["debug"], None),
        "dofile": ('dofile("/etc/hostname")', ["dofile"], None),
        "loadfile": ('local f = loadfile("/etc/hostname")', ["loadfile"], None),
        "binary-chunk": ("local f, e = load(string.dump(function() return 1 end)) if not f then error(e) end",
                         ["binary chunk"], None),
        "binary-chunk-mode-b": ('local f, e = load(string.dump(function() return 1 end), "x", "b") '
                                "if not f then error(e) end", ["binary chunk"], None),
        "binary-chunk-reader": ("local d = string.dump(function() return 1 end) local i = 0 "
                                "local f, e = load(function() i = i + 1 return d:sub(i, i) end, 'x', 'bt') "
                                "if not f then error(e) end", ["binary chunk"], None),
    }


@pytest.mark.parametrize("name", sample_under_wrapper(list(forbidden_calls(Path("/nowhere"))), keep=[
    "os.execute", "io.open", "os.exit", "require", "debug", "binary-chunk"]))
def test_restricted_stdlib(connector, tmp_path, name):
    keep = tmp_path / "keep"
    keep.write_text("still here")
    code, words, must_not_exist = forbidden_calls(tmp_path)[name]
    script = broken(tmp_path, "top", code)
    result = connector.spec(flags=("--script", script))
    assert_system_error(result, position(script), *words)
    assert result.of("SPEC") == []
    if must_not_exist:
        assert not must_not_exist.exists(), f"{name} ran: {must_not_exist} was created"
    assert keep.read_text() == "still here"


def test_restricted_stdlib_inside_a_read(connector, tmp_path):
    """The same refusal mid-sync (the sandbox is not only for load time)."""
    marker = tmp_path / "pwned"
    script = broken(tmp_path, "parse", f'os.execute("touch {marker}")')
    assert_read_failed(read(connector, script), position(script), "execute")
    assert not marker.exists()


def test_a_finalizer_cannot_be_set(connector, tmp_path):
    """Lua runs __gc with its hooks off: one that never ends hung check and read past the
    instruction budget, the watchdog and SIGTERM. setmetatable refuses a metatable with __gc."""
    script = broken(tmp_path, "parse", "setmetatable({}, {__gc = function() while true do end end})")
    result = read(connector, script, timeout=30)
    assert_read_failed(result, position(script), "__gc (finalizers) is not available")


def test_os_time_of_fields_is_refused_as_it_reads_the_host_zone(connector, tmp_path):
    """os.time() is the clock; os.time{...} would read its fields in the host's zone (TZ), which
    must never change what a script computes."""
    script = broken(tmp_path, "parse", "assert(math.type(os.time()) == 'integer') "
                    "os.time({year = 2022, month = 3, day = 1, hour = 0})")
    result = read(connector, script)
    assert_read_failed(result, position(script), "use date.parse(text, zone)")


def test_text_load_with_its_own_environment(connector, tmp_path):
    script = broken(tmp_path, "parse",
                    "assert(load('return 1 + 1')() == 2) assert(load('return x * 2', 'n', 't', {x = 21})() == 42)")
    result = read(connector, script).assert_complete()
    assert len(result.records) == 9


def test_text_load_sees_the_sandboxed_globals(connector, tmp_path):
    """load(text) without an environment runs in the script's globals (as in stock Lua), which
    are the fenced ones: math is there, os.execute and io are not."""
    script = broken(tmp_path, "parse",
                    "assert(load('return math.pi')() == math.pi) assert(load('return os.execute')() == nil) "
                    "assert(load('return io')() == nil)")
    result = read(connector, script).assert_complete()
    assert len(result.records) == 9


# --------------------------------------------------------------------------------------------
# globals and print
# --------------------------------------------------------------------------------------------

CLOBBER = ("sl_calls = (sl_calls or 0) + 1; "
           "json = nil; log = nil; print = nil; tostring = nil; error = nil; pcall = nil; "
           "collectgarbage = nil; select = nil; type = nil; next = nil; rawget = nil; "
           "setmetatable(_G, {__newindex = function(t, k, v) rawset(t, k, v) end})")


def by_ticker_and_date(data) -> list:
    return sorted(data, key=lambda d: (d["stock_ticker"], d["date"]))


def test_writing_globals_is_allowed_but_harmless(connector, tmp_path):
    """parse clears globals the runtime's own modules and error paths could rely on, and counts
    its calls in a global: the run (two tickers: two parse calls, JSON decoding, STATE writing)
    gives exactly the stock script's records and state, and the global lives for one run only.
    (The tickers may be read concurrently, in either order.)"""
    config = connector.config(stock_ticker="AAPL,MSFT")
    stock = connector.read(config, now=AFTER_CLOSE).assert_complete()
    script = script_copy(tmp_path, (ANCHORS["parse"], ANCHORS["parse"] + "    " + CLOBBER + "\n"),
                         ('{ "stock_ticker", context = "partition" },\n',
                          '{ "stock_ticker", context = "partition" },\n    { "sl_calls", context = "sl_calls" },\n'),
                         ("    return BARS:map(ctx, response)\n",
                          "    ctx.sl_calls = sl_calls\n    return BARS:map(ctx, response)\n"))
    for _ in range(2):
        result = connector.read(config, now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
        assert by_ticker_and_date([{k: v for k, v in d.items() if k != "sl_calls"} for d in result.data]) == \
            by_ticker_and_date(stock.data)
        calls = {t: {d["sl_calls"] for d in result.data if d["stock_ticker"] == t} for t in ("AAPL", "MSFT")}
        assert sorted(calls.values(), key=min) == [{1}, {2}], calls
        assert result.last_stream_state == stock.last_stream_state


def test_errors_are_reported_after_globals_are_cleared(connector, tmp_path):
    script = broken(tmp_path, "parse", CLOBBER + "; local fault_here = nil; fault_here.field = 1")
    assert_read_failed(read(connector, script), position(script), NIL_INDEX)


PRINTED = {
    "values": ('print("hello", 42, nil, true, 1.5)', "hello\t42\tnil\ttrue\t1.5"),
    "fake-record": (r'print([[{"type":"RECORD","record":{"stream":"stock_prices","data":{},"emitted_at":0}}]])',
                    '{"type":"RECORD","record":{"stream":"stock_prices","data":{},"emitted_at":0}}'),
    "newlines": (r'print("two\nlines\r\nand more")', "two\nlines\r\nand more"),
    "control": (r'print("\27[31mred\27[0m\t\b\f")', "\x1b[31mred\x1b[0m\t\b\f"),
    "big": ('print(string.rep("z", 200000))', "z" * 200000),
}


def test_print_becomes_a_log_message(connector, tmp_path):
    lines = "; ".join(code for code, _ in PRINTED.values())
    script = broken(tmp_path, "parse", lines + r'; print("bad utf8: \255\254 end")')
    result = read(connector, script).assert_complete()
    assert len(result.records) == 9, "print must not add records"
    logs = [m["log"] for m in result.of("LOG")]
    texts = [log["message"] for log in logs]
    for name, (_, text) in PRINTED.items():
        assert text in texts, f"{name}: {text[:80]!r} not printed as one LOG message"
        assert logs[texts.index(text)]["level"] == "INFO"
    bad = [t for t in texts if t.startswith("bad utf8: ")]
    assert len(bad) == 1 and bad[0].endswith(" end"), bad
    assert {r["stream"] for r in result.records} == {STREAM}
    assert "hello" not in result.stderr


def test_print_and_log_keep_text_after_a_nul_byte(connector, tmp_path):
    """Lua strings may hold NUL bytes; a LOG message must not end at the first one."""
    script = broken(tmp_path, "parse", r'print("before\0after print") log.warn("before\0after log")')
    result = read(connector, script).assert_complete()
    texts = [m["log"]["message"] for m in result.of("LOG")]
    assert "before\0after print" in texts, [t for t in texts if t.startswith("before")]
    assert "before\0after log" in texts, [t for t in texts if t.startswith("before")]


# --------------------------------------------------------------------------------------------
# partitions and the state they are kept in
# --------------------------------------------------------------------------------------------

def test_partition_state_key_equal_to_the_cursor_field_is_refused(connector, tmp_path):
    """The state holds {partition_state_key = {...}, cursor_field = day}: one name for both would
    write one member over the other."""
    script = script_copy(tmp_path, ('partition_state_key = "tickers",', 'partition_state_key = "date",'))
    result = read(connector, script)
    assert_system_error(result, "partition_state_key 'date' is also the cursor field")
    assert result.statuses == [], "refused when the script is loaded, before any stream starts"
    assert result.records == []


def test_a_partition_with_a_nul_character_is_a_config_error(connector):
    """Partition keys name members of the state: a NUL would cut one short (and two keys could
    become one)."""
    result = connector.read(connector.config(stock_ticker="TS\u0000LA,AAPL"), now=AFTER_CLOSE)
    error = the_error(result)
    assert error["failure_type"] == "config_error", result.describe()
    assert result.records == []


def test_http_get_without_options(connector, tmp_path):
    """http.get(url) with no options table, as the docs show it."""
    script = tmp_path / "get.lua"
    script.write_text(
        'return { spec = { connectionSpecification = { type = "object" } },\n'
        '  check = function(config)\n'
        '    local status, body = http.get(config.base_url .. "/v3/reference/tickers/TSLA?apiKey=" .. config.api_key)\n'
        '    return status == 200, tostring(status) .. " " .. tostring(body):sub(1, 40) end,\n'
        '  streams = { { name = "a", json_schema = {}, request = function() end, parse = function() end } } }\n')
    result = connector.check(connector.config(), flags=("--script", script))
    assert result.connection_status["status"] == "SUCCEEDED", result.describe()
