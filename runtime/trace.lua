--[[
The test-read trace (runtime/trace.c runs this in a Lua state of its own, never the script's).

It is handed, in order, every line the read writes: the protocol's messages (RECORD, STATE, LOG,
TRACE, CONTROL) and the engine's events ({"type":"_EVENT","event":"partition"|"request"|
"response"|"page"|"limit", ...}), and prints them as a readable trace (text) or as JSON lines,
one event each. With infer_schema it also infers each stream's JSON schema from its records.
describe(event) is the same text for --debug's LOG lines.
]]

local options = {}
local out, progress_out -- C functions: a line on stdout; the progress line on stderr
local streams = {} -- name -> {requests, pages, records, hidden, started, schema, checkpoints_held}
local order = {}
local current -- the stream being read (the retries' messages do not name it)

local function stream_of(name)
  local s = streams[name]
  if not s then
    s = { requests = 0, pages = 0, records = 0, hidden = 0, retries = 0, started = now_ms(), name = name }
    streams[name] = s
    order[#order + 1] = name
  end
  return s
end

local function clip(text, width)
  if options.json or #text <= width then
    return text
  end
  return text:sub(1, width - 3) .. "..."
end

local function size(bytes)
  if bytes >= 1048576 then
    return string.format("%.1f MB", bytes / 1048576)
  elseif bytes >= 1024 then
    return string.format("%.1f kB", bytes / 1024)
  end
  return bytes .. " B"
end

local function where(e)
  return e.partition and (e.stream .. "[" .. e.partition .. "]") or e.stream
end

local function emit(event)
  if options.json then
    out(json.encode(event))
  end
end

local describe = {}

function describe.partition(e)
  local span = ""
  if e.from or e.to then
    span = ": " .. tostring(e.from or "the beginning") .. " .. " .. tostring(e.to or "no end")
  end
  return "partition " .. where(e) .. span .. (e.reading == false and " (up to date: nothing to read)" or "")
end

local function tag(e)
  return e.partition and ("[" .. e.partition .. "] ") or ""
end

function describe.request(e)
  local headers = #e.headers > 0 and (" [" .. table.concat(e.headers, "; ") .. "]") or ""
  local body = e.body_bytes > 0 and (" body " .. size(e.body_bytes)) or ""
  local key = e.query_credential and (" (+ " .. e.query_credential .. "=****)") or ""
  local text = "> " .. tag(e) .. e.method .. " " .. e.url .. key .. headers .. body
  if options.verbose and e.body then
    text = text .. "\n      " .. e.body
  end
  return text
end

function describe.response(e)
  local text = "< " .. tag(e) .. (e.status > 0 and ("HTTP " .. e.status) or "no answer") .. " in " .. e.ms .. " ms, "
    .. size(e.bytes)
  if e.error then
    text = text .. " (" .. e.error .. ")"
  end
  return text
end

function describe.page(e)
  local parts = { string.format("page %d of %s: %d records parsed, %d kept", e.page, where(e), e.records, e.kept) }
  local reasons = {
    { "outside_window", "outside the window" },
    { "already_emitted", "sent by an earlier read" },
    { "skipped_by_script", "skipped by the script" },
  }
  for _, r in ipairs(reasons) do
    local n = e.dropped[r[1]]
    if n and n > 0 then
      parts[#parts + 1] = string.format("%d dropped (%s)", n, r[2])
    end
  end
  if (e.past_ceiling or 0) > 0 then
    parts[#parts + 1] = string.format("%d past the ceiling (kept, sent again next read)", e.past_ceiling)
  end
  if (e.schema_warnings or 0) > 0 then
    parts[#parts + 1] = string.format("%d schema mismatches", e.schema_warnings)
  end
  parts[#parts + 1] = e.next and ("next: " .. e.next) or "no next page"
  return table.concat(parts, "; ")
end

function describe.limit(e)
  local why = {
    ["max-records"] = "; no checkpoint shown past the records not shown (it would skip them)",
    ["max-pages"] = "",
    ["max-partitions"] = "; the partitions begun are read to their end",
  }
  return string.format("%s: stopped at --%s %d%s", e.stream, e.limit, e.value, why[e.limit] or "")
end

function describe.error(e)
  return "ERROR (" .. e.failure_type .. "): " .. e.message
end

local function say(event, indent)
  if options.json then
    emit(event)
  else
    out(string.rep("  ", indent or 0) .. describe[event.event](event))
  end
end

local function show_progress(s)
  if progress_out then
    progress_out(string.format("%s: %d requests, %d pages, %d records", s.name, s.requests, s.pages, s.records))
  end
end

-- ---- schema inference ----

local ARRAY_MT = getmetatable(json.array({}))

local function is_array(value)
  return #value > 0 or getmetatable(value) == ARRAY_MT
end

local function kind_of(value)
  local t = type(value)
  if value == json.null then
    return "null"
  elseif t == "boolean" then
    return "boolean"
  elseif t == "number" then
    return math.type(value) == "integer" and "integer" or "number"
  elseif t == "string" then
    return "string"
  elseif t == "table" then
    return is_array(value) and "array" or "object"
  end
  return "string"
end

local function format_of(text)
  if text:match("^%d%d%d%d%-%d%d%-%d%d$") then
    return "date"
  elseif text:match("^%d%d%d%d%-%d%d%-%d%d[T ]%d%d:%d%d:%d%d") then
    return "date-time"
  end
  return nil
end

local function learn(node, value)
  node.seen = (node.seen or 0) + 1
  local kind = kind_of(value)
  node.types = node.types or {}
  node.types[kind] = true
  if kind == "string" then
    local f = format_of(value)
    if node.format == nil then
      node.format = f or false
    elseif node.format ~= f then
      node.format = false
    end
  elseif kind == "object" then
    node.properties = node.properties or {}
    node.objects = (node.objects or 0) + 1
    for key, v in pairs(value) do
      node.properties[key] = node.properties[key] or {}
      learn(node.properties[key], v)
    end
  elseif kind == "array" then
    node.items = node.items or {}
    for _, v in ipairs(value) do
      learn(node.items, v)
    end
  end
end

local function schema_of(node)
  local types = {}
  for t in pairs(node.types or {}) do
    types[#types + 1] = t
  end
  if node.types and node.types.integer and node.types.number then
    for i, t in ipairs(types) do
      if t == "integer" then
        table.remove(types, i)
        break
      end
    end
  end
  table.sort(types)
  local schema = { type = #types == 1 and types[1] or json.array(types) }
  if node.format then
    schema.format = node.format
  end
  if node.properties then
    schema.properties = {}
    for key, child in pairs(node.properties) do
      local s = schema_of(child)
      if child.seen < node.objects then
        -- absent from some records: nullable
        local t = type(s.type) == "table" and s.type or { s.type }
        local has_null = false
        for _, x in ipairs(t) do
          has_null = has_null or x == "null"
        end
        if not has_null then
          t[#t + 1] = "null"
          table.sort(t)
          s.type = json.array(t)
        end
      end
      schema.properties[key] = s
    end
  end
  if node.items and node.items.types then
    schema.items = schema_of(node.items)
  end
  return schema
end

local function type_list(t)
  if t == nil then
    return {}
  end
  return type(t) == "table" and t or { t }
end

local function allows(declared, kind)
  for _, t in ipairs(type_list(declared)) do
    if t == kind or (t == "number" and kind == "integer") then
      return true
    end
  end
  return #type_list(declared) == 0
end

-- What the records show that the declared schema does not say, and the reverse.
local function differences(inferred, declared, path, lines)
  local props = inferred.properties or {}
  local dprops = type(declared) == "table" and declared.properties
  if not dprops then
    if path == "" then
      lines[#lines + 1] = "the declared json_schema lists no properties"
    end
    return lines
  end
  local keys = {}
  for k in pairs(props) do
    keys[#keys + 1] = k
  end
  for k in pairs(dprops) do
    if not props[k] then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local name = path .. k
    local got, want = props[k], dprops[k]
    if not want then
      lines[#lines + 1] = name .. ": in the records, not in the declared schema"
    elseif not got then
      lines[#lines + 1] = name .. ": declared, in no record read"
    else
      for _, kind in ipairs(type_list(got.type)) do
        if not allows(want.type, kind) then
          lines[#lines + 1] = string.format("%s: records hold %s, the schema says %s", name, kind,
            table.concat(type_list(want.type), " or "))
        end
      end
      if got.properties then
        differences(got, want, name .. ".", lines)
      end
    end
  end
  return lines
end

-- ---- the lines of the read ----

local handlers = {}
local pending = {} -- the records of the page being written, shown after its page line

local function flush_pending()
  for _, text in ipairs(pending) do
    out(text)
  end
  pending = {}
end

function handlers.RECORD(m, text)
  local r = m.record
  -- The record as written, its members in the stream's order (decoding would sort them).
  local raw = text:match('^{"type":"RECORD","record":{"stream":".-","data":(.*),"emitted_at":%d+}}$')
  local s = stream_of(r.stream)
  s.records = s.records + 1
  if options.infer_schema then
    s.schema = s.schema or {}
    learn(s.schema, r.data)
  end
  if options.max_records and s.records > options.max_records then
    s.hidden = s.hidden + 1
    s.hold_checkpoints = true
    return
  end
  local data = raw or json.encode(r.data)
  if options.json then
    pending[#pending + 1] = '{"event":"record","stream":' .. json.encode(r.stream) .. ',"data":' .. data .. "}"
  else
    pending[#pending + 1] = clip("      " .. data, options.width)
  end
end

function handlers.STATE(m)
  local st = m.state
  local name = st.stream and st.stream.stream_descriptor.name or "(global)"
  local s = stream_of(name)
  if s.hold_checkpoints then
    return -- it would cover records the trace did not show
  end
  local state = st.stream and st.stream.stream_state or st.data
  if options.json then
    emit({ event = "checkpoint", stream = name, state = state })
  else
    out(clip("  checkpoint " .. name .. ": " .. json.encode(state), options.width))
  end
end

function handlers.LOG(m)
  local level, message = m.log.level, m.log.message
  if level == "INFO" and not options.verbose then
    return
  end
  if level == "WARN" and message:match("; retry %d+ ") and current and streams[current] then
    streams[current].retries = streams[current].retries + 1
  end
  if options.json then
    emit({ event = "log", level = level, message = message })
  else
    out("  " .. level .. " " .. message)
  end
end

function handlers.TRACE(m)
  local t = m.trace
  if t.type == "ERROR" then
    say({ event = "error", failure_type = t.error.failure_type, message = t.error.message })
  elseif t.type == "STREAM_STATUS" then
    local name = t.stream_status.stream_descriptor.name
    local status = t.stream_status.status
    local s = stream_of(name)
    if status == "STARTED" then
      s.started = now_ms()
      current = name
      if options.json then
        emit({ event = "stream", stream = name, status = "started" })
      else
        out("== stream " .. name)
      end
    elseif status == "COMPLETE" or status == "INCOMPLETE" then
      s.status = status == "COMPLETE" and (s.stopped and "stopped at a limit" or "complete") or "failed"
      local seconds = (now_ms() - s.started) / 1000
      if options.json then
        emit({ event = "summary", stream = name, requests = s.requests, pages = s.pages, records = s.records,
          records_not_shown = s.hidden, retries = s.retries, seconds = seconds, status = s.status })
      else
        out(string.format("== %s: %d requests, %d pages, %d records%s, %d retries in %.2f s (%s)", name, s.requests,
          s.pages, s.records, s.hidden > 0 and string.format(" (%d past --max-records not shown)", s.hidden) or "",
          s.retries, seconds, s.status))
      end
    end
  end
end

function handlers.CONTROL(m)
  -- The config it carries holds the secrets: only say that it came.
  if options.json then
    emit({ event = "config_update", what = "the connector sent a new config (a rotated OAuth2 refresh token)" })
  else
    out("  CONTROL: the connector sent a new config (a rotated OAuth2 refresh token); not shown, it holds secrets")
  end
end

function handlers._EVENT(m)
  local e = m
  e.type = nil
  for k, v in pairs(e) do
    if v == json.null then
      e[k] = nil
    end
  end
  if e.stream then
    local s = stream_of(e.stream)
    if e.event == "request" then
      s.requests = s.requests + 1
    elseif e.event == "page" then
      s.pages = s.pages + 1
    elseif e.event == "limit" then
      s.stopped = true
    end
    show_progress(s)
  end
  local indent = ({ partition = 1, request = 2, response = 2, page = 2, limit = 1 })[e.event] or 1
  say(e, indent)
end

local function line(text)
  local ok, m = pcall(json.decode, text)
  local page = ok and type(m) == "table" and m.type == "_EVENT" and m.event == "page"
  if not page and not (ok and type(m) == "table" and m.type == "RECORD") then
    flush_pending()
  end
  if not ok or type(m) ~= "table" or not handlers[m.type] then
    out(text) -- not a message: shown as it came
    return
  end
  handlers[m.type](m, text)
  if page then
    flush_pending()
  end
end

-- A JSON value as a Lua table constructor, to paste into json_schema.
local function lua_literal(value, indent)
  indent = indent or ""
  if type(value) == "string" then
    return string.format("%q", value)
  elseif type(value) ~= "table" then
    return tostring(value)
  end
  local inner = indent .. "  "
  local parts = {}
  if is_array(value) then
    for _, v in ipairs(value) do
      parts[#parts + 1] = lua_literal(v, inner)
    end
    return "{ " .. table.concat(parts, ", ") .. " }"
  end
  local keys = {}
  for k in pairs(value) do
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b)
    local rank = { ["$schema"] = 1, type = 2, format = 3, required = 4, properties = 5, items = 6 }
    local ra, rb = rank[a] or 9, rank[b] or 9
    if ra ~= rb then
      return ra < rb
    end
    return a < b
  end)
  for _, k in ipairs(keys) do
    local name = k:match("^[%a_][%w_]*$") and k or ("[" .. string.format("%q", k) .. "]")
    parts[#parts + 1] = inner .. name .. " = " .. lua_literal(value[k], inner) .. ","
  end
  return "{\n" .. table.concat(parts, "\n") .. "\n" .. indent .. "}"
end

local function finish()
  flush_pending()
  if not options.infer_schema then
    return
  end
  for _, name in ipairs(order) do
    local s = streams[name]
    if s.schema then
      local inferred = schema_of(s.schema)
      inferred["$schema"] = "http://json-schema.org/draft-07/schema#"
      local diffs = differences(inferred, options.declared and options.declared[name], "", {})
      if options.json then
        emit({ event = "inferred_schema", stream = name, schema = inferred, differences = json.array(diffs) })
      else
        out("== inferred schema of " .. name .. " (from " .. s.records .. " records), as Lua for json_schema:")
        out("json_schema = " .. lua_literal(inferred) .. ",")
        if #diffs == 0 then
          out("   it agrees with the declared json_schema")
        end
        for _, d in ipairs(diffs) do
          out("   differs: " .. d)
        end
      end
    end
  end
end

local function describe_event(text)
  local ok, e = pcall(json.decode, text)
  if not ok or type(e) ~= "table" or not describe[e.event] then
    return text
  end
  for k, v in pairs(e) do
    if v == json.null then
      e[k] = nil
    end
  end
  return describe[e.event](e)
end

return function(given, line_out, progress)
  options = given
  options.width = options.width or 200
  out, progress_out = line_out, progress
  return { line = line, finish = finish, describe = describe_event }
end
