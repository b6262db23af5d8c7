--[[
mlwatch.lua: Fluent Bit lua filter that turns the records of the mlwatch client's forward
exporter (mlwatch.client.fluent, wire format v1) into the Elasticsearch document layout of
mlwatch.elastic.documents, so Fluent Bit can write them straight into the data streams:

    tag                                  document              data stream (namespace default)
    mlwatch.<model>, mlwatch.events.<m>  event_document        logs-mlwatch.predictions-default
    mlwatch.feedback                     feedback_document     logs-mlwatch.feedback-default
    mlwatch.models                       registration_document logs-mlwatch.models-default
    mlwatch.drops                        a drop report         logs-mlwatch.drops-default
    (a record that breaks the format)    dead letter           logs-mlwatch.deadletter-default

    filters:
      - name: lua
        match: 'mlwatch.*'
        script: mlwatch.lua
        call: mlwatch_document
        time_as_table: true      # exact microseconds in and out
        enable_flb_null: true    # keeps JSON null (a null feature, a null label)

Per record:

* it is validated the way the sidecar validates it (mlwatch.wire: required fields, names,
  limits, unknown fields, RFC 3339 timestamps, in the same order, so the same field is
  named); a record that fails becomes a dead letter (event.dataset mlwatch.deadletter,
  error.message naming the field, the record as JSON in mlwatch.dead_letter.document) that
  a rewrite_tag filter moves to the dead-letter output;
* events and feedback come back with the record time set to their ts (UTC) and without an
  @timestamp field: the es output adds @timestamp from the record time (its Time_Key),
  and a second one would make Elasticsearch refuse the document;
* event.id is the event_id / feedback_id (the es output's Id_Key, so a replay is a 409,
  not a duplicate); a record without one gets a UUIDv7 derived from its content and time,
  the same on every replay. A registration's id is a hash of its content (one document
  however many processes send it), a drop report's its report_id;
* host.name and kubernetes.* describe the machine Fluent Bit runs on (the kernel
  hostname; POD_NAME / POD_NAMESPACE / NODE_NAME from the Downward API).

Lua has one number type: an integer-valued float prediction (2.0) is indexed like the
integer 2 (prediction_value and prediction_class), and an integer-valued float where the
wire format wants an integer (batch_size 3.0) is accepted. Strings are checked for control
and invisible format characters, not for every character Python calls non-printable.
--]]

local bit = bit or require("bit")

local PREDICTIONS, FEEDBACK, MODELS, DROPS, DEAD_LETTER =
    "mlwatch.predictions", "mlwatch.feedback", "mlwatch.models", "mlwatch.drops",
    "mlwatch.deadletter"
-- the mlwatch client's tags (mlwatch.client.fluent): everything else is mlwatch.<model>
-- or mlwatch.events.<model>, a prediction event
local KINDS = { ["mlwatch.feedback"] = "feedback", ["mlwatch.models"] = "registration",
                ["mlwatch.drops"] = "drops" }
local STREAMS = { event = PREDICTIONS, feedback = FEEDBACK, registration = MODELS,
                  drops = DROPS }

local MAX_FEATURES, MAX_STRING, MAX_NAME, MAX_LABELS, MAX_ID, MAX_DEPTH =
    2000, 2048, 128, 32, 256, 32

local EVENT_FIELDS = {
    event_id = true, ts = true, model = true, version = true, request_id = true,
    features = true, prediction = true, latency_ms = true, status = true, error = true,
    code_version = true, run_id = true, labels = true, batch_size = true,
    environment = true,
}
-- what the sidecar stamps on events that name no environment
local DEFAULT_ENVIRONMENT = "default"
local FEEDBACK_FIELDS = { feedback_id = true, ts = true, model = true, request_id = true,
                          label = true }
local REGISTRATION_FIELDS = { model = true, version = true, code_version = true,
                              run_id = true, task = true, params = true }

-- Fluent Bit's table type marks (flb_lua_metadata): 1 array, 2 map.
local ARRAY, MAP = 1, 2

-- values --------------------------------------------------------------------------------

local function isnull(v)
    -- flb_null is read at call time: Fluent Bit defines it after loading the script.
    return v == nil or v == flb_null
end

local function finite(v)
    return v == v and v ~= math.huge and v ~= -math.huge
end

local function isint(v)
    return type(v) == "number" and finite(v) and v == math.floor(v)
end

local function kind(t)
    -- "array", "map" or "empty" (an empty table from an old Fluent Bit without marks)
    local meta = getmetatable(t)
    if type(meta) == "table" then
        if meta.type == ARRAY then return "array" end
        if meta.type == MAP then return "map" end
    end
    if next(t) == nil then return "empty" end
    local n = #t
    if n > 0 then
        local count = 0
        for _ in pairs(t) do count = count + 1 end
        if count == n then return "array" end
    end
    return "map"
end

local function typename(v)
    if isnull(v) then return "null" end
    local t = type(v)
    if t == "table" then
        local k = kind(v)
        return k == "array" and "array" or "object"
    end
    if t == "number" then return isint(v) and "int" or "float" end
    if t == "boolean" then return "bool" end
    if t == "string" then return "str" end
    return t
end

local function utf8_len(s)
    local _, n = s:gsub("[^\128-\191]", "")
    return n
end

-- control characters (C0, DEL, C1), no-break and invisible format characters, line and
-- paragraph separators: what str.isprintable() refuses in practice.
local NOT_PRINTABLE = { "[%z\1-\31\127]", "\194[\128-\160]", "\194\173",
                        "\226\128[\139-\143\168-\174]", "\239\187\191" }

local function printable(s)
    for _, pattern in ipairs(NOT_PRINTABLE) do
        if s:find(pattern) then return false end
    end
    return true
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    return keys
end

local function show(v)
    if isnull(v) then return "null" end
    if type(v) == "string" then
        local text = string.format("%q", v)
        if #text > 40 then text = text:sub(1, 37) .. "..." end
        return text
    end
    if type(v) == "number" or type(v) == "boolean" then return tostring(v) end
    return typename(v)
end

local function integer_text(v)
    if v == 0 then return "0" end
    return string.format("%.0f", v)
end

-- canonical JSON (sorted keys): dead-letter documents and content hashes --------------------

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function quote(s)
    return '"' .. s:gsub('[%z\1-\31"\\]', function(c)
        return ESCAPES[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
end

local function encode(v, out, depth)
    if depth > MAX_DEPTH + 2 then
        out[#out + 1] = '"..."'
    elseif isnull(v) then
        out[#out + 1] = "null"
    elseif type(v) == "boolean" then
        out[#out + 1] = v and "true" or "false"
    elseif type(v) == "number" then
        if not finite(v) then
            out[#out + 1] = "null"
        elseif isint(v) and math.abs(v) < 2 ^ 63 then
            out[#out + 1] = integer_text(v)
        else
            out[#out + 1] = string.format("%.17g", v)
        end
    elseif type(v) == "string" then
        out[#out + 1] = quote(v)
    elseif type(v) == "table" then
        if kind(v) == "array" then
            out[#out + 1] = "["
            for i = 1, #v do
                if i > 1 then out[#out + 1] = "," end
                encode(v[i], out, depth + 1)
            end
            out[#out + 1] = "]"
        else
            out[#out + 1] = "{"
            for i, k in ipairs(sorted_keys(v)) do
                if i > 1 then out[#out + 1] = "," end
                out[#out + 1] = quote(tostring(k))
                out[#out + 1] = ":"
                encode(v[k], out, depth + 1)
            end
            out[#out + 1] = "}"
        end
    else
        out[#out + 1] = "null"
    end
    return out
end

local function to_json(v)
    return table.concat(encode(v, {}, 0))
end

-- FNV-1a, 32 bits (16777619 = 2^24 + 403 keeps every product exact in a double)
local function fnv1a(s, h)
    for i = 1, #s do
        h = bit.bxor(h, s:byte(i))
        h = bit.tobit(h * 403 + bit.lshift(h, 24))
    end
    return h
end

-- A UUIDv7 for the moment `ms` whose 74 "random" bits are a hash of `content`.
local function content_uuid7(ms, content)
    local h1 = fnv1a(content, bit.tobit(0x811c9dc5))
    local h2 = fnv1a(content, bit.tobit(0x050c5d1f))
    local h3 = fnv1a(content, bit.tobit(0x6b43a9b5))
    local hi, lo = math.floor(ms / 4294967296), ms % 4294967296
    local t = bit.tohex(hi, 4) .. bit.tohex(lo, 8)
    local a = bit.tohex(bit.bor(0x7000, bit.band(h1, 0x0fff)), 4)
    local b = bit.tohex(bit.bor(0x8000, bit.band(bit.rshift(h1, 16), 0x3fff)), 4)
    return t:sub(1, 8) .. "-" .. t:sub(9, 12) .. "-" .. a .. "-" .. b .. "-"
        .. bit.tohex(h2, 8) .. bit.tohex(bit.rshift(h3, 16), 4)
end

-- time ------------------------------------------------------------------------------------

local function days_from_civil(y, m, d)  -- days since 1970-01-01 (proleptic Gregorian)
    if m <= 2 then y = y - 1 end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local mp = (m + 9) % 12
    local doy = math.floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

local function civil_from_days(z)
    z = z + 719468
    local era = math.floor(z / 146097)
    local doe = z - era * 146097
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                            - math.floor(doe / 146096)) / 365)
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
    local mp = math.floor((5 * doy + 2) / 153)
    local d = doy - math.floor((153 * mp + 2) / 5) + 1
    local m = mp < 10 and mp + 3 or mp - 9
    local y = yoe + era * 400
    if m <= 2 then y = y + 1 end
    return y, m, d
end

local function days_in_month(y, m)
    if m == 2 then
        local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
        return leap and 29 or 28
    end
    return (m == 4 or m == 6 or m == 9 or m == 11) and 30 or 31
end

local MIN_SECONDS = days_from_civil(1, 1, 1) * 86400
local MAX_SECONDS = days_from_civil(9999, 12, 31) * 86400 + 86399

local function fail(field, message)
    error({ field = field, message = message }, 0)
end

-- RFC 3339 -> seconds, microseconds (UTC), like mlwatch.wire.parse_ts
local function parse_ts(value, field)
    local example = "expected an RFC 3339 timestamp like 2026-01-31T12:00:00Z, got "
    if type(value) ~= "string" then fail(field, example .. show(value)) end
    local y, mo, d, h, mi, s, rest =
        value:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
    if not y then fail(field, example .. show(value)) end
    local frac, zone = rest:match("^%.(%d+)(.*)$")
    if not frac then zone = rest end
    if frac and #frac > 9 then fail(field, example .. show(value)) end
    local offset = 0
    if zone ~= "Z" then
        local sign, oh, om = zone:match("^([+-])(%d%d):(%d%d)$")
        if not sign then fail(field, example .. show(value)) end
        oh, om = tonumber(oh), tonumber(om)
        if oh > 23 or om > 59 then fail(field, "not a valid date/time: " .. value) end
        offset = (oh * 3600 + om * 60) * (sign == "-" and -1 or 1)
    end
    y, mo, d, h, mi, s = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi),
                         tonumber(s)
    if y < 1 or mo < 1 or mo > 12 or d < 1 or d > days_in_month(y, mo) or h > 23 or mi > 59
            or s > 59 then
        fail(field, "not a valid date/time: " .. value)
    end
    local usec = frac and tonumber((frac .. "00000"):sub(1, 6)) or 0
    local sec = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
    if sec < MIN_SECONDS or sec > MAX_SECONDS then
        fail(field, "not a valid date/time: " .. value)
    end
    return sec, usec
end

local function record_time(timestamp)
    if type(timestamp) == "table" then  -- time_as_table: true
        return timestamp.sec, math.floor((timestamp.nsec or 0) / 1000)
    end
    local sec = math.floor(timestamp)
    return sec, math.min(999999, math.floor((timestamp - sec) * 1e6 + 0.5))
end

-- validation (mlwatch.wire, in the same order, so the same field is named) -----------------

local NAME_MESSAGE = "expected a name of letters, digits and '_.:-' (at most 128), got "

local function name(obj, key, required)
    local v = obj[key]
    if isnull(v) then
        if required then fail(key, "required") end
        return nil
    end
    if type(v) ~= "string" or #v > MAX_NAME or not v:match("^%w[%w_.:%-]*$") then
        fail(key, NAME_MESSAGE .. show(v))
    end
    return v
end

local function text(obj, key, limit)
    local v = obj[key]
    if isnull(v) then return nil end
    if type(v) ~= "string" or v == "" or utf8_len(v) > limit then
        fail(key, "expected a non-empty string of at most " .. limit .. " characters, got "
             .. show(v))
    end
    if not printable(v) then fail(key, "control characters are not allowed") end
    return v
end

local function check_unknown(obj, allowed)
    if type(obj) ~= "table" or kind(obj) == "array" then
        fail(nil, "expected a JSON object, got " .. typename(obj))
    end
    for _, k in ipairs(sorted_keys(obj)) do
        if not allowed[k] then fail(tostring(k), "unknown field") end
    end
end

local function check_json_value(v, field, depth)
    if type(v) == "number" then
        if not finite(v) then fail(field, "NaN and infinity are not allowed") end
    elseif type(v) == "table" and not isnull(v) then
        if depth >= MAX_DEPTH then fail(field, "nested deeper than " .. MAX_DEPTH .. " levels") end
        if kind(v) == "array" then
            for i = 1, #v do check_json_value(v[i], field .. "[" .. (i - 1) .. "]", depth + 1) end
        else
            for _, k in ipairs(sorted_keys(v)) do
                check_json_value(v[k], field .. "." .. tostring(k), depth + 1)
            end
        end
    end
end

local function check_features(features)
    if isnull(features) then return nil end
    if type(features) ~= "table" or kind(features) == "array" then
        fail("features", "expected an object, got " .. typename(features))
    end
    local count = 0
    for _ in pairs(features) do count = count + 1 end
    if count > MAX_FEATURES then
        fail("features", "at most " .. MAX_FEATURES .. " features, got " .. count)
    end
    for _, k in ipairs(sorted_keys(features)) do
        local v, field = features[k], "features." .. tostring(k)
        if type(v) == "number" then
            if not finite(v) then fail(field, "NaN and infinity are not allowed; send null") end
        elseif type(v) == "string" then
            if utf8_len(v) > MAX_STRING then
                fail(field, "string longer than " .. MAX_STRING .. " characters")
            end
        elseif type(v) ~= "boolean" and not isnull(v) then
            fail(field, "expected a number, string, boolean or null, got " .. typename(v))
        end
    end
    return features
end

local function check_labels(labels)
    if isnull(labels) then return nil end
    if type(labels) ~= "table" or kind(labels) == "array" then
        fail("labels", "expected an object of at most " .. MAX_LABELS .. " string values")
    end
    local keys = sorted_keys(labels)
    if #keys > MAX_LABELS then
        fail("labels", "expected an object of at most " .. MAX_LABELS .. " string values")
    end
    for _, k in ipairs(keys) do
        local v = labels[k]
        if type(k) ~= "string" or #k > 64 or not k:match("^[%a_][%w_]*$") then
            fail("labels." .. tostring(k):sub(1, 64),
                 "label names are letters, digits and '_' (at most 64), not starting with a digit")
        end
        if type(v) ~= "string" or utf8_len(v) > MAX_NAME then
            fail("labels." .. k, "expected a string of at most " .. MAX_NAME
                 .. " characters, got " .. show(v))
        end
    end
    return labels
end

local function validate_event(obj, timestamp)
    check_unknown(obj, EVENT_FIELDS)
    local ev = { model = name(obj, "model", true) }
    ev.version = text(obj, "version", MAX_NAME) or "unknown"
    local latency = obj.latency_ms
    if isnull(latency) then fail("latency_ms", "required") end
    if type(latency) ~= "number" then
        fail("latency_ms", "expected a non-negative number, got " .. typename(latency))
    end
    if not (latency >= 0 and latency <= 604800000) then
        fail("latency_ms", "expected milliseconds between 0 and 604800000 (a week), got "
             .. tostring(latency))
    end
    ev.latency_ms = latency
    local status = obj.status
    if status == nil then status = "ok" end
    if status ~= "ok" and status ~= "error" then
        fail("status", "expected 'ok' or 'error', got " .. show(status))
    end
    ev.status = status
    ev.event_id = text(obj, "event_id", 64)
    if isnull(obj.ts) then
        ev.sec, ev.usec = record_time(timestamp)
    else
        ev.sec, ev.usec = parse_ts(obj.ts, "ts")
    end
    ev.labels = check_labels(obj.labels)
    local batch_size = obj.batch_size
    if not isnull(batch_size) and (not isint(batch_size) or batch_size < 1) then
        fail("batch_size", "expected a positive integer, got " .. show(batch_size))
    end
    ev.batch_size = not isnull(batch_size) and batch_size or nil
    local prediction = obj.prediction
    check_json_value(prediction, "prediction", 0)
    ev.prediction = not isnull(prediction) and prediction or nil
    ev.request_id = text(obj, "request_id", MAX_ID)
    ev.features = check_features(obj.features)
    ev.error = text(obj, "error", MAX_NAME)
    ev.code_version = text(obj, "code_version", MAX_NAME)
    ev.run_id = text(obj, "run_id", MAX_NAME)
    local env = obj.environment
    if not isnull(env) and (type(env) ~= "string" or #env > 64
            or not string.match(env, "^[a-z0-9][a-z0-9_]*$")) then
        fail("environment", "expected an environment of lowercase letters, digits and '_' "
            .. "(at most 64), got " .. show(env))
    end
    ev.environment = not isnull(env) and env or nil
    return ev
end

local function validate_feedback(obj, timestamp)
    check_unknown(obj, FEEDBACK_FIELDS)
    local fb = { model = name(obj, "model", true) }
    fb.request_id = text(obj, "request_id", MAX_ID)
    if fb.request_id == nil then fail("request_id", "required") end
    if obj.label == nil then fail("label", "required") end  -- null (flb_null) is a label
    check_json_value(obj.label, "label", 0)
    fb.label = obj.label
    if isnull(obj.ts) then
        fb.sec, fb.usec = record_time(timestamp)
    else
        fb.sec, fb.usec = parse_ts(obj.ts, "ts")
    end
    fb.feedback_id = text(obj, "feedback_id", 64)
    return fb
end

local function validate_registration(obj, timestamp)
    check_unknown(obj, REGISTRATION_FIELDS)
    local params = obj.params
    if not isnull(params) then
        if type(params) ~= "table" or kind(params) == "array" then
            fail("params", "expected an object, got " .. typename(params))
        end
        check_json_value(params, "params", 0)
    end
    local task = obj.task
    if not isnull(task) and task ~= "classification" and task ~= "regression" then
        fail("task", "expected 'classification' or 'regression', got " .. show(task))
    end
    local reg = { model = name(obj, "model", true) }
    reg.version = text(obj, "version", MAX_NAME) or "unknown"
    reg.code_version = text(obj, "code_version", MAX_NAME)
    reg.run_id = text(obj, "run_id", MAX_NAME)
    reg.task = not isnull(task) and task or nil
    reg.params = not isnull(params) and params or {}
    reg.sec, reg.usec = record_time(timestamp)
    return reg
end

-- one entry of a drop report (mlwatch.wire.validate_drop_report)
local function validate_drops(obj, timestamp)
    local model, version = obj.model, obj.version
    if version == nil then version = "unknown" end
    local reason, count, report_id = obj.reason, obj.count, obj.report_id
    if not (type(model) == "string" and #model <= MAX_NAME and model:match("^%w[%w_.:%-]*$")
            and type(version) == "string" and version ~= "" and utf8_len(version) <= MAX_NAME
            and printable(version)
            and type(reason) == "string" and #reason <= 32 and reason:match("^[a-z_]+$")
            and isint(count) and count >= 0
            and (isnull(report_id) or (type(report_id) == "string" and report_id ~= ""
                                       and utf8_len(report_id) <= 64 and printable(report_id)))) then
        fail(nil, "expected {model, version, reason: [a-z_]+, count: int >= 0, "
             .. "report_id?: string}")
    end
    local sec, usec = record_time(timestamp)
    return { model = model, version = version, reason = reason, count = count,
             report_id = not isnull(report_id) and report_id or nil, sec = sec, usec = usec }
end

-- documents (mlwatch.elastic.documents) ------------------------------------------------------

local origin  -- computed once, at the first record

local function first_line(path)
    local f = io.open(path, "r")
    if not f then return nil end
    local line = f:read("*l")
    f:close()
    if line and line ~= "" then return line end
    return nil
end

local function env(key)
    local v = os.getenv(key)
    if v and v ~= "" then return v end
    return nil
end

local function origin_fields(doc)
    if origin == nil then
        local host = first_line("/proc/sys/kernel/hostname") or env("HOSTNAME")
                     or first_line("/etc/hostname") or "localhost"
        local pod, namespace, node = env("POD_NAME"), env("POD_NAMESPACE"), env("NODE_NAME")
        origin = { host = host, pod = pod, namespace = namespace, node = node }
    end
    doc.host = { name = origin.host }
    if origin.pod or origin.namespace or origin.node then
        local kube = {}
        if origin.pod then kube.pod = { name = origin.pod } end
        if origin.namespace then kube.namespace = origin.namespace end
        if origin.node then kube.node = { name = origin.node } end
        doc.kubernetes = kube
    end
    return doc
end

local function split_value(v, prefix, into)
    -- a number as a value, a scalar class as a keyword (lists and objects only raw)
    if type(v) == "boolean" then
        into[prefix .. "_class"] = v and "true" or "false"
    elseif type(v) == "number" then
        into[prefix .. "_value"] = v
        if isint(v) and math.abs(v) < 2 ^ 63 then into[prefix .. "_class"] = integer_text(v) end
    elseif type(v) == "string" then
        into[prefix .. "_class"] = v
    end
end

local function round_half_even(x)
    local f = math.floor(x)
    local d = x - f
    if d > 0.5 or (d == 0.5 and f % 2 == 1) then return f + 1 end
    return f
end

local function ms_of(sec, usec)
    return sec * 1000 + math.floor(usec / 1000)
end

local function event_document(ev, tag, record)
    local ml = { model = ev.model, version = ev.version, status = ev.status,
                 latency_ms = ev.latency_ms }
    ml.code_version, ml.run_id, ml.batch_size = ev.code_version, ev.run_id, ev.batch_size
    ml.features = ev.features
    if ev.prediction ~= nil then
        ml.prediction = ev.prediction
        split_value(ev.prediction, "prediction", ml)
    end
    local id = ev.event_id or content_uuid7(ms_of(ev.sec, ev.usec), tag .. "\n" .. to_json(record))
    local doc = {
        event = { id = id, kind = "event", dataset = PREDICTIONS,
                  outcome = ev.status == "ok" and "success" or "failure",
                  duration = round_half_even(ev.latency_ms * 1000000) },
        service = { name = ev.model, version = ev.version,
                    environment = ev.environment or DEFAULT_ENVIRONMENT },
        mlwatch = ml,
    }
    if ev.request_id then doc.http = { request = { id = ev.request_id } } end
    if ev.error then doc.error = { type = ev.error } end
    if ev.labels then
        doc.labels = ev.labels
        if type(ev.labels.trace_id) == "string" then doc.trace = { id = ev.labels.trace_id } end
    end
    return origin_fields(doc)
end

local function feedback_document(fb, tag, record)
    local ml = { model = fb.model, label = fb.label }
    split_value(fb.label, "label", ml)
    local id = fb.feedback_id
               or content_uuid7(ms_of(fb.sec, fb.usec), tag .. "\n" .. to_json(record))
    return origin_fields({
        event = { id = id, kind = "event", dataset = FEEDBACK },
        service = { name = fb.model },
        http = { request = { id = fb.request_id } },
        mlwatch = ml,
    })
end

-- 40 hex digits of content hash: one document per registration content, however many
-- processes send it (the sidecar's registration_id is a SHA-256 prefix of the same content)
local function content_id40(content)
    local out = {}
    for i, seed in ipairs({ 0x811c9dc5, 0x050c5d1f, 0x6b43a9b5, 0x2f1e3d4c, 0x5bd1e995 }) do
        out[i] = bit.tohex(fnv1a(content, bit.tobit(seed)), 8)
    end
    return table.concat(out)
end

local function registration_document(reg)
    local ml = { model = reg.model, version = reg.version, code_version = reg.code_version,
                 run_id = reg.run_id, task = reg.task, params = reg.params }
    local identity = to_json({ model = reg.model, version = reg.version,
                               code_version = reg.code_version or flb_null,
                               run_id = reg.run_id or flb_null, task = reg.task or flb_null,
                               params = reg.params })
    return origin_fields({
        event = { id = content_id40(identity), kind = "event", dataset = MODELS },
        service = { name = reg.model, version = reg.version },
        mlwatch = ml,
    })
end

local function drops_document(report, tag, record)
    -- a report is applied once (by report_id), wherever and whenever it arrives
    local id = report.report_id
               and content_id40(to_json({ report.report_id, report.model, report.version,
                                          report.reason }))
               or content_uuid7(ms_of(report.sec, report.usec), tag .. "\n" .. to_json(record))
    return origin_fields({
        event = { id = id, kind = "metric", dataset = DROPS },
        service = { name = report.model, version = report.version },
        mlwatch = { model = report.model, version = report.version, reason = report.reason,
                    dropped = report.count, report_id = report.report_id },
    })
end

-- a record that breaks the wire format, kept whole (the layout of the sidecar's dead
-- letters: mlwatch.dead_letter.{data_stream, status, document}; 422 as the HTTP API answers)
local function dead_letter(tag, timestamp, record, problem, stream)
    local document = to_json(record)
    local sec, usec = record_time(timestamp)
    local message = problem.message
    if problem.field then message = "field '" .. problem.field .. "': " .. message end
    return origin_fields({
        event = { id = content_uuid7(ms_of(sec, usec), tag .. "\n" .. document),
                  kind = "pipeline_error", dataset = DEAD_LETTER },
        error = { type = "ValidationError", message = message },
        mlwatch = { tag = tag, dead_letter = { data_stream = "logs-" .. stream .. "-*",
                                               status = 422, document = document } },
    })
end

-- the filter ---------------------------------------------------------------------------------

local VALIDATE = { event = validate_event, feedback = validate_feedback,
                  registration = validate_registration, drops = validate_drops }

function mlwatch_document(tag, timestamp, record)
    local what = KINDS[tag] or "event"
    local ok, result = pcall(VALIDATE[what], record, timestamp)
    if not ok then
        local problem = type(result) == "table" and result
                        or { message = "mlwatch.lua: " .. tostring(result) }
        return 2, timestamp, dead_letter(tag, timestamp, record, problem, STREAMS[what])
    end
    if what == "registration" then return 2, timestamp, registration_document(result) end
    if what == "drops" then return 2, timestamp, drops_document(result, tag, record) end
    local doc = what == "feedback" and feedback_document(result, tag, record)
                or event_document(result, tag, record)
    local nsec = result.usec * 1000
    if type(timestamp) == "table" then
        return 1, { sec = result.sec, nsec = nsec }, doc
    end
    return 1, result.sec + result.usec / 1e6, doc
end
