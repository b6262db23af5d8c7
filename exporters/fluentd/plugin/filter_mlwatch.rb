# frozen_string_literal: true

# Fluentd filter `@type mlwatch`: the records of the mlwatch client's forward exporter
# (tags mlwatch.<model>, mlwatch.events.<model>, mlwatch.feedback, mlwatch.models,
# mlwatch.drops) -> the Elasticsearch documents of mlwatch.elastic.documents
# (see mlwatch_documents.rb).
#
#   <filter mlwatch.**>
#     @type mlwatch
#   </filter>
#
# A record that breaks the wire format is not dropped: it goes to the @ERROR label (as
# Fluentd's own plugins do with records they cannot process), where
#
#   <label @ERROR>
#     <filter mlwatch.**>
#       @type mlwatch
#       mode deadletter
#     </filter>
#     ...
#
# turns it - or a document Elasticsearch refused with a 400 - into a dead-letter document
# for logs-mlwatch.deadletter-<namespace>. Load it with `fluentd -p <this directory>` or
# copy both .rb files into /etc/fluent/plugin.

require 'fluent/plugin/filter'
require_relative 'mlwatch_documents'

module Fluent
  module Plugin
    class MlwatchFilter < Filter
      Fluent::Plugin.register_filter('mlwatch', self)

      desc 'document: wire format -> document; deadletter: anything -> dead-letter document'
      config_param :mode, :enum, list: %i[document deadletter], default: :document

      def filter_stream(tag, es)
        out = Fluent::MultiEventStream.new
        es.each do |time, record|
          if @mode == :deadletter
            out.add(time, dead_letter(tag, time, record))
            next
          end
          begin
            doc, sec, nsec = Mlwatch::Documents.document(tag, time, record)
            out.add(Fluent::EventTime.new(sec, nsec), doc)
          rescue StandardError => e
            router.emit_error_event(tag, time, record, e)
          end
        end
        out
      end

      private

      def dead_letter(tag, time, record)
        if record.is_a?(Hash) && record['event'].is_a?(Hash) && record.key?('mlwatch')
          return Mlwatch::Documents.dead_letter(
            tag, time, record, 'rejected by Elasticsearch (see the Fluentd log for the reason)',
            'ElasticsearchError', 400
          )
        end
        Mlwatch::Documents.document(tag, time, record)
        Mlwatch::Documents.dead_letter(tag, time, record, 'could not be processed ' \
                                                          '(see the Fluentd log)', 'ProcessingError', nil)
      rescue Mlwatch::Documents::Invalid => e
        Mlwatch::Documents.dead_letter(tag, time, record, e.message)
      rescue StandardError => e
        Mlwatch::Documents.dead_letter(tag, time, record, e.message, e.class.name, nil)
      end
    end
  end
end
