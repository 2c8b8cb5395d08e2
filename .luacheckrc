-- luacheck (Debian lua-check) over the connector scripts: `make lint`, part of `make test`.
-- The globals are the sandbox's (runtime/host.c): Lua 5.4's base library without dofile,
-- loadfile and require; table, string, math, utf8 and coroutine; os.clock, os.difftime and
-- os.time only; and the runtime's modules, each with its fields, so that a misspelt function
-- (http.gett) or a library the sandbox does not have (io, os.getenv) is reported.
stds.source_lua = {
  read_globals = {
    "_G", "_VERSION", "assert", "collectgarbage", "error", "getmetatable", "ipairs", "load", "next",
    "pairs", "pcall", "print", "rawequal", "rawget", "rawlen", "rawset", "select", "setmetatable",
    "tonumber", "tostring", "type", "warn", "xpcall",
    "coroutine", "math", "string", "table", "utf8",
    os = { fields = { "clock", "difftime", "time" } },
    http = { fields = { "request", "get", "post", "escape" } },
    json = { fields = { "decode", "encode", "array", "object", "null" } },
    date = { fields = { "today", "now", "now_ms", "parse", "format", "from_ms", "add_days", "diff_days",
      "is_day", "weekday" } },
    records = { fields = { "declare" } },
    log = { fields = { "info", "warn", "error", "debug" } },
  },
}
std = "source_lua"
-- Specs hold long descriptions; the length of a line is the formatter's business, not a mistake.
max_line_length = false
-- A script returns its table; what it defines at the top is used by it.
allow_defined_top = false
