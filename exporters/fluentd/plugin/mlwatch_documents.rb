# frozen_string_literal: true

# The records of the mlwatch client's forward exporter (mlwatch.client.fluent, wire format
# v1) -> the Elasticsearch document layout of mlwatch.elastic.documents, in plain Ruby
# (standard library only), for the Fluentd filter in filter_mlwatch.rb:
#
#   mlwatch.<model>, mlwatch.events.<model>  event_document         -> mlwatch.predictions
#   mlwatch.feedback                         feedback_document      -> mlwatch.feedback
#   mlwatch.models                           registration_document  -> mlwatch.models
#   mlwatch.drops                            a drop report          -> mlwatch.drops
#
# Records are validated the way the sidecar validates them (mlwatch.wire.validate_event /
# validate_feedback, same checks in the same order, so the same field is named); a record
# that fails raises Mlwatch::Documents::Invalid. Documents carry @timestamp (the event's
# ts normalised to UTC with microseconds), event.id (the event_id: the _id that makes a
# replay a 409 instead of a duplicate; a record without one gets a UUIDv7 derived from its
# content, the same on every replay), and host.name / kubernetes.* of the machine Fluentd
# runs on (Socket.gethostname, POD_NAME / POD_NAMESPACE / NODE_NAME).

require 'date'
require 'digest'
require 'json'
require 'socket'

module Mlwatch
  module Documents
    PREDICTIONS = 'mlwatch.predictions'
    FEEDBACK = 'mlwatch.feedback'
    MODELS = 'mlwatch.models'
    DROPS = 'mlwatch.drops'
    DEAD_LETTER = 'mlwatch.deadletter'
    # the client's tags; every other one is mlwatch.<model> or mlwatch.events.<model>
    KINDS = { 'mlwatch.feedback' => :feedback, 'mlwatch.models' => :registration,
              'mlwatch.drops' => :drops }.freeze
    STREAMS = { event: PREDICTIONS, feedback: FEEDBACK, registration: MODELS,
                drops: DROPS }.freeze

    MAX_FEATURES = 2_000
    MAX_STRING = 2_048
    MAX_NAME = 128
    MAX_LABELS = 32
    MAX_ID = 256
    MAX_DEPTH = 32

    EVENT_FIELDS = %w[event_id ts model version request_id features prediction latency_ms
                      status error code_version run_id labels batch_size environment].freeze
    FEEDBACK_FIELDS = %w[feedback_id ts model request_id label].freeze
    REGISTRATION_FIELDS = %w[model version code_version run_id task params].freeze
    NAME_RE = /\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\z/.freeze
    LABEL_KEY_RE = /\A[A-Za-z_][A-Za-z0-9_]{0,63}\z/.freeze
    ENVIRONMENT_RE = /\A[a-z0-9][a-z0-9_]{0,63}\z/.freeze
    DEFAULT_ENVIRONMENT = 'default' # what the sidecar stamps on events that name none
    TS_RE = /\A(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})\z/.freeze
    # what Python's str.isprintable() refuses: controls, format, surrogates, private use,
    # unassigned, line/paragraph separators and every space but ' '
    NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}[\p{Zs}&&[^ ]]]/.freeze

    # A record that breaks the wire format; +field+ is the dotted path, like
    # mlwatch.errors.ValidationError.
    class Invalid < StandardError
      attr_reader :field, :reason

      def initialize(field, reason)
        @field = field
        @reason = reason
        super(field ? "field '#{field}': #{reason}" : reason)
      end
    end

    module_function

    def kind_of(tag)
      KINDS.fetch(tag, :event)
    end

    # -> [document, seconds, nanoseconds] of the event time the document stands for.
    def document(tag, time, record)
      case kind_of(tag)
      when :feedback then feedback_document(tag, time, record)
      when :registration then registration_document(time, record)
      when :drops then drops_document(tag, time, record)
      else event_document(tag, time, record)
      end
    end

    def event_document(tag, time, record)
      ev = validate_event(record, time)
      ml = { 'model' => ev[:model], 'version' => ev[:version], 'status' => ev[:status],
             'latency_ms' => ev[:latency_ms] }
      %i[code_version run_id batch_size].each { |k| ml[k.to_s] = ev[k] unless ev[k].nil? }
      ml['features'] = ev[:features] unless ev[:features].nil?
      unless ev[:prediction].nil?
        ml['prediction'] = ev[:prediction]
        split_value(ev[:prediction], 'prediction', ml)
      end
      id = ev[:event_id] || content_uuid7(ev[:sec], ev[:usec], tag, record)
      doc = {
        '@timestamp' => format_time(ev[:sec], ev[:usec]),
        'event' => { 'id' => id, 'kind' => 'event', 'dataset' => PREDICTIONS,
                     'outcome' => ev[:status] == 'ok' ? 'success' : 'failure',
                     'duration' => (ev[:latency_ms] * 1_000_000).round(half: :even) },
        'service' => { 'name' => ev[:model], 'version' => ev[:version],
                       'environment' => ev[:environment] || DEFAULT_ENVIRONMENT },
        'mlwatch' => ml
      }.merge(origin)
      doc['http'] = { 'request' => { 'id' => ev[:request_id] } } unless ev[:request_id].nil?
      doc['error'] = { 'type' => ev[:error] } unless ev[:error].nil?
      unless ev[:labels].nil?
        doc['labels'] = ev[:labels]
        doc['trace'] = { 'id' => ev[:labels]['trace_id'] } if ev[:labels]['trace_id'].is_a?(String)
      end
      [doc, ev[:sec], ev[:usec] * 1000]
    end

    def feedback_document(tag, time, record)
      fb = validate_feedback(record, time)
      ml = { 'model' => fb[:model], 'label' => fb[:label] }
      split_value(fb[:label], 'label', ml)
      id = fb[:feedback_id] || content_uuid7(fb[:sec], fb[:usec], tag, record)
      doc = {
        '@timestamp' => format_time(fb[:sec], fb[:usec]),
        'event' => { 'id' => id, 'kind' => 'event', 'dataset' => FEEDBACK },
        'service' => { 'name' => fb[:model] },
        'http' => { 'request' => { 'id' => fb[:request_id] } },
        'mlwatch' => ml
      }.merge(origin)
      [doc, fb[:sec], fb[:usec] * 1000]
    end

    def registration_document(time, record)
      reg = validate_registration(record)
      sec, usec = record_time(time)
      ml = reg.reject { |k, v| k == 'params' || v.nil? }
      ml['params'] = reg['params']
      doc = {
        '@timestamp' => format_time(sec, usec),
        'event' => { 'id' => registration_id(reg), 'kind' => 'event', 'dataset' => MODELS },
        'service' => { 'name' => reg['model'], 'version' => reg['version'] },
        'mlwatch' => ml
      }.merge(origin)
      [doc, sec, usec * 1000]
    end

    # mlwatch.elastic.documents.registration_id: SHA-256 of the sorted, compact JSON
    def registration_id(reg)
      Digest::SHA256.hexdigest(JSON.generate(sort_keys(reg)))[0, 40]
    end

    def sort_keys(value)
      case value
      when Hash then value.keys.sort.to_h { |k| [k, sort_keys(value[k])] }
      when Array then value.map { |v| sort_keys(v) }
      else value
      end
    end

    def drops_document(tag, time, record)
      report = validate_drops(record)
      sec, usec = record_time(time)
      id = if report['report_id']
             key = JSON.generate(report.values_at('report_id', 'model', 'version', 'reason'))
             Digest::SHA256.hexdigest(key)[0, 40]
           else
             content_uuid7(sec, usec, tag, record)
           end
      ml = { 'model' => report['model'], 'version' => report['version'],
             'reason' => report['reason'], 'dropped' => report['count'] }
      ml['report_id'] = report['report_id'] unless report['report_id'].nil?
      doc = {
        '@timestamp' => format_time(sec, usec),
        'event' => { 'id' => id, 'kind' => 'metric', 'dataset' => DROPS },
        'service' => { 'name' => report['model'], 'version' => report['version'] },
        'mlwatch' => ml
      }.merge(origin)
      [doc, sec, usec * 1000]
    end

    # A record that cannot be indexed, kept whole: the layout of the sidecar's dead letters
    # (mlwatch.dead_letter.{data_stream, status, document}).
    def dead_letter(tag, time, record, message, type = 'ValidationError', status = 422)
      sec, usec = record_time(time)
      document = begin
        JSON.generate(record, allow_nan: true)
      rescue JSON::GeneratorError, EncodingError
        record.inspect
      end
      dead = { 'data_stream' => "logs-#{STREAMS.fetch(kind_of(tag))}-*" }
      dead['status'] = status unless status.nil?
      dead['document'] = document
      {
        '@timestamp' => format_time(sec, usec),
        'event' => { 'id' => content_uuid7(sec, usec, tag, document), 'kind' => 'pipeline_error',
                     'dataset' => DEAD_LETTER },
        'error' => { 'type' => type, 'message' => message },
        'mlwatch' => { 'tag' => tag, 'dead_letter' => dead }
      }.merge(origin)
    end

    # -- the machine this runs on ------------------------------------------------------------

    def origin
      @origin ||= begin
        out = { 'host' => { 'name' => Socket.gethostname } }
        pod, namespace, node = %w[POD_NAME POD_NAMESPACE NODE_NAME].map { |k| env(k) }
        kube = {}
        kube['pod'] = { 'name' => pod } if pod
        kube['namespace'] = namespace if namespace
        kube['node'] = { 'name' => node } if node
        out['kubernetes'] = kube unless kube.empty?
        out
      end
    end

    def env(key)
      value = ENV[key]
      value.nil? || value.empty? ? nil : value
    end

    # -- values ------------------------------------------------------------------------------

    def split_value(value, prefix, into)
      case value
      when true, false then into["#{prefix}_class"] = value.to_s
      when Integer
        into["#{prefix}_value"] = value.to_f
        into["#{prefix}_class"] = value.to_s
      when Float then into["#{prefix}_value"] = value
      when String then into["#{prefix}_class"] = value
      end
    end

    def content_uuid7(sec, usec, tag, record)
      content = record.is_a?(String) ? record : JSON.generate(record, allow_nan: true)
      digest = Digest::SHA256.digest("#{tag}\n#{content}").unpack1('H*')
      ms = sec * 1000 + usec / 1000
      hex = format('%012x', ms & 0xffff_ffff_ffff)
      rand_a = (digest[0, 4].to_i(16) & 0x0fff) | 0x7000
      rand_b = (digest[4, 4].to_i(16) & 0x3fff) | 0x8000
      "#{hex[0, 8]}-#{hex[8, 4]}-#{format('%04x', rand_a)}-#{format('%04x', rand_b)}-" \
        "#{digest[8, 12]}"
    end

    def format_time(sec, usec)
      Time.at(sec).utc.strftime('%Y-%m-%dT%H:%M:%S') + format('.%06dZ', usec)
    end

    def record_time(time)
      if time.respond_to?(:sec) && time.respond_to?(:nsec)
        [time.sec, time.nsec / 1000]
      elsif time.is_a?(Integer)
        [time, 0]
      else
        sec = time.to_r.floor
        [sec, ((time.to_r - sec) * 1_000_000).floor]
      end
    end

    # -- validation (mlwatch.wire) -----------------------------------------------------------

    def show(value)
      case value
      when nil then 'null'
      when true, false, Integer, Float then value.to_s
      when String
        text = value.inspect
        text.length <= 40 ? text : "#{text[0, 37]}..."
      else typename(value)
      end
    end

    def typename(value)
      case value
      when Hash then 'object'
      when Array then 'array'
      when nil then 'null'
      when true, false then 'bool'
      when Integer then 'int'
      when Float then 'float'
      when String then 'str'
      else value.class.name
      end
    end

    def name(obj, key, required:)
      value = obj[key]
      if value.nil?
        raise Invalid.new(key, 'required') if required

        return nil
      end
      unless value.is_a?(String) && NAME_RE.match?(value)
        raise Invalid.new(key, "expected a name of letters, digits and '_.:-' " \
                               "(at most #{MAX_NAME}), got #{show(value)}")
      end
      value
    end

    def text(obj, key, limit = MAX_ID)
      value = obj[key]
      return nil if value.nil?

      if !value.is_a?(String) || value.empty? || value.length > limit
        raise Invalid.new(key, "expected a non-empty string of at most #{limit} characters, " \
                               "got #{show(value)}")
      end
      raise Invalid.new(key, 'control characters are not allowed') if NOT_PRINTABLE.match?(value)

      value
    end

    def check_unknown(obj, allowed)
      raise Invalid.new(nil, "expected a JSON object, got #{typename(obj)}") unless obj.is_a?(Hash)

      obj.each_key do |key|
        next if allowed.include?(key)

        raise Invalid.new(key.to_s, "unknown field (allowed: #{allowed.sort.join(', ')})")
      end
    end

    def check_json_value(value, field, depth = 0)
      case value
      when Float
        raise Invalid.new(field, 'NaN and infinity are not allowed') unless value.finite?
      when Array, Hash
        raise Invalid.new(field, "nested deeper than #{MAX_DEPTH} levels") if depth >= MAX_DEPTH

        if value.is_a?(Array)
          value.each_with_index { |item, i| check_json_value(item, "#{field}[#{i}]", depth + 1) }
        else
          value.each { |key, item| check_json_value(item, "#{field}.#{key}", depth + 1) }
        end
      end
    end

    def check_features(features)
      return nil if features.nil?
      raise Invalid.new('features', "expected an object, got #{typename(features)}") \
        unless features.is_a?(Hash)
      if features.size > MAX_FEATURES
        raise Invalid.new('features', "at most #{MAX_FEATURES} features, got #{features.size}")
      end

      features.each do |key, value|
        case value
        when Float
          raise Invalid.new("features.#{key}", 'NaN and infinity are not allowed; send null') \
            unless value.finite?
        when String
          raise Invalid.new("features.#{key}", "string longer than #{MAX_STRING} characters") \
            if value.length > MAX_STRING
        when Integer, true, false, nil then nil
        else
          raise Invalid.new("features.#{key}",
                            "expected a number, string, boolean or null, got #{typename(value)}")
        end
      end
      features
    end

    def check_labels(labels)
      return nil if labels.nil?
      if !labels.is_a?(Hash) || labels.size > MAX_LABELS
        raise Invalid.new('labels', "expected an object of at most #{MAX_LABELS} string values")
      end

      labels.each do |key, value|
        unless key.is_a?(String) && LABEL_KEY_RE.match?(key)
          raise Invalid.new("labels.#{key.to_s[0, 64]}", "label names are letters, digits and " \
                                                         "'_' (at most 64), not starting with a digit")
        end
        unless value.is_a?(String) && value.length <= MAX_NAME
          raise Invalid.new("labels.#{key}", "expected a string of at most #{MAX_NAME} " \
                                             "characters, got #{show(value)}")
        end
      end
      labels
    end

    def parse_ts(value, field = 'ts')
      m = value.is_a?(String) ? TS_RE.match(value) : nil
      unless m
        raise Invalid.new(field, 'expected an RFC 3339 timestamp like 2026-01-31T12:00:00Z, ' \
                                 "got #{show(value)}")
      end
      y, mo, d, h, mi, s = m[1, 6].map(&:to_i)
      offset = 0
      if m[8] != 'Z'
        oh, om = m[8][1, 2].to_i, m[8][4, 2].to_i
        raise Invalid.new(field, "not a valid date/time: #{value.inspect}") if oh > 23 || om > 59

        offset = (oh * 3600 + om * 60) * (m[8][0] == '-' ? -1 : 1)
      end
      unless y >= 1 && Date.valid_date?(y, mo, d) && h <= 23 && mi <= 59 && s <= 59
        raise Invalid.new(field, "not a valid date/time: #{value.inspect}")
      end

      sec = Time.utc(y, mo, d, h, mi, s).to_i - offset
      year = Time.at(sec).utc.year
      raise Invalid.new(field, "not a valid date/time: #{value.inspect}") unless year.between?(1, 9999)

      [sec, m[7] ? m[7].ljust(6, '0')[0, 6].to_i : 0]
    end

    def validate_event(obj, time)
      check_unknown(obj, EVENT_FIELDS)
      ev = { model: name(obj, 'model', required: true) }
      ev[:version] = text(obj, 'version', MAX_NAME) || 'unknown'
      latency = obj['latency_ms']
      raise Invalid.new('latency_ms', 'required') if latency.nil?
      unless latency.is_a?(Integer) || latency.is_a?(Float)
        raise Invalid.new('latency_ms', "expected a non-negative number, got #{typename(latency)}")
      end
      unless latency.to_f.finite? && latency >= 0 && latency <= 604_800_000
        raise Invalid.new('latency_ms',
                          "expected milliseconds between 0 and 604800000 (a week), got #{latency}")
      end

      ev[:latency_ms] = latency.to_f
      status = obj.fetch('status', 'ok')
      unless %w[ok error].include?(status)
        raise Invalid.new('status', "expected 'ok' or 'error', got #{show(status)}")
      end

      ev[:status] = status
      ev[:event_id] = text(obj, 'event_id', 64)
      ev[:sec], ev[:usec] = obj['ts'].nil? ? record_time(time) : parse_ts(obj['ts'])
      ev[:labels] = check_labels(obj['labels'])
      batch_size = obj['batch_size']
      if !batch_size.nil? && (!batch_size.is_a?(Integer) || batch_size < 1)
        raise Invalid.new('batch_size', "expected a positive integer, got #{show(batch_size)}")
      end

      ev[:batch_size] = batch_size
      check_json_value(obj['prediction'], 'prediction')
      ev[:prediction] = obj['prediction']
      ev[:request_id] = text(obj, 'request_id')
      ev[:features] = check_features(obj['features'])
      ev[:error] = text(obj, 'error', MAX_NAME)
      ev[:code_version] = text(obj, 'code_version', MAX_NAME)
      ev[:run_id] = text(obj, 'run_id', MAX_NAME)
      ev[:environment] = environment(obj)
      ev
    end

    def environment(obj)
      value = obj['environment']
      return nil if value.nil?
      return value if value.is_a?(String) && ENVIRONMENT_RE.match?(value)

      raise Invalid.new('environment', 'expected an environment of lowercase letters, digits ' \
                                       "and '_' (at most 64), got #{show(value)}")
    end

    def validate_registration(obj)
      check_unknown(obj, REGISTRATION_FIELDS)
      params = obj['params']
      unless params.nil?
        raise Invalid.new('params', "expected an object, got #{typename(params)}") \
          unless params.is_a?(Hash)

        check_json_value(params, 'params')
      end
      task = obj['task']
      unless task.nil? || %w[classification regression].include?(task)
        raise Invalid.new('task', "expected 'classification' or 'regression', got #{show(task)}")
      end

      { 'model' => name(obj, 'model', required: true),
        'version' => text(obj, 'version', MAX_NAME) || 'unknown',
        'code_version' => text(obj, 'code_version', MAX_NAME),
        'run_id' => text(obj, 'run_id', MAX_NAME), 'task' => task,
        'params' => params.nil? || params.empty? ? {} : params }
    end

    # one entry of a drop report (mlwatch.wire.validate_drop_report)
    def validate_drops(obj)
      raise Invalid.new(nil, "expected a JSON object, got #{typename(obj)}") unless obj.is_a?(Hash)

      version = obj.fetch('version', 'unknown')
      report_id = obj['report_id']
      ok = obj['model'].is_a?(String) && NAME_RE.match?(obj['model']) &&
           version.is_a?(String) && !version.empty? && version.length <= MAX_NAME &&
           !NOT_PRINTABLE.match?(version) &&
           obj['reason'].is_a?(String) && /\A[a-z_]{1,32}\z/.match?(obj['reason']) &&
           obj['count'].is_a?(Integer) && obj['count'] >= 0 &&
           (report_id.nil? || (report_id.is_a?(String) && !report_id.empty? &&
                               report_id.length <= 64 && !NOT_PRINTABLE.match?(report_id)))
      unless ok
        raise Invalid.new(nil, 'expected {model, version, reason: [a-z_]+, count: int >= 0, ' \
                               'report_id?: string}')
      end

      { 'model' => obj['model'], 'version' => version, 'reason' => obj['reason'],
        'count' => obj['count'], 'report_id' => report_id }
    end

    def validate_feedback(obj, time)
      check_unknown(obj, FEEDBACK_FIELDS)
      fb = { model: name(obj, 'model', required: true) }
      fb[:request_id] = text(obj, 'request_id')
      raise Invalid.new('request_id', 'required') if fb[:request_id].nil?
      raise Invalid.new('label', 'required') unless obj.key?('label')

      check_json_value(obj['label'], 'label')
      fb[:label] = obj['label']
      fb[:sec], fb[:usec] = obj['ts'].nil? ? record_time(time) : parse_ts(obj['ts'])
      fb[:feedback_id] = text(obj, 'feedback_id', 64)
      fb
    end
  end
end
