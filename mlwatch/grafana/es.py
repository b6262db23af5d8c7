"""What an Elasticsearch dashboard is made of: the datasource, the variables and queries in
Lucene over the predictions stream (``logs-mlwatch.predictions-<namespace>``, the index the
provisioned datasource reads; fields as :mod:`mlwatch.elastic.documents` writes them).

The events carry ``mlwatch.model``, ``mlwatch.version`` and the environment they were
served in (``service.environment``, as the sidecar and the Fluent Bit and Fluentd
pipelines write it). Grafana writes a multi-value choice in Lucene as ``("a" OR "b")``
and a custom All value as it is, so All on the environment is a clause that also matches
events indexed before environments (without the field), as ``.*`` does on the Prometheus
dashboards.

>>> SCOPE
'mlwatch.model:"$model" AND mlwatch.version:$version AND service.environment:$environment'
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import elasticsearch as esm

from mlwatch.grafana.common import ELASTICSEARCH_UID, datasource_variable

DATASOURCE = models.DataSourceRef(type_val="elasticsearch", uid="${datasource}")
TIME_FIELD = "@timestamp"  # the provisioned datasource's timeField
ENVIRONMENT = "service.environment"
ENVIRONMENT_ALL = f"(* OR (NOT _exists_:{ENVIRONMENT}))"
#: Every panel's documents: the dashboard's model, the versions and environments chosen.
SCOPE = f'mlwatch.model:"$model" AND mlwatch.version:$version AND {ENVIRONMENT}:$environment'

Metric = Builder[esm.MetricAggregation]
Bucket = Builder[esm.BucketAggregation]


def source() -> db.DatasourceVariable:
    """The ``datasource`` variable over Elasticsearch datasources, on the provisioned one."""
    return datasource_variable("elasticsearch", "Elasticsearch", ELASTICSEARCH_UID)


def variables(board: db.Dashboard, model: str) -> db.Dashboard:
    """``model`` fixed; ``version`` and ``environment`` chosen from the model's events."""
    board.with_variable(db.ConstantVariable("model").value(model))
    board.with_variable(_terms_variable("version", "Version", "mlwatch.version", "*"))
    return board.with_variable(
        _terms_variable("environment", "Environment", ENVIRONMENT, ENVIRONMENT_ALL)
    )


def _terms_variable(name: str, label: str, field: str, all_value: str) -> db.QueryVariable:
    """A multi-value variable over the values of ``field`` in the model's events (an
    Elasticsearch terms query); All is ``all_value``, used as it is."""
    query = {"find": "terms", "field": field, "query": 'mlwatch.model:"$model"'}
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(json.dumps(query, sort_keys=True))
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(all_value)
        .current(models.VariableOption(text="All", value="$__all"))
    )


def target(query: str, metrics: Sequence[Metric], buckets: Sequence[Bucket] = ()) -> es.Dataquery:
    """One query of a panel: the panel's Lucene ``query`` within :data:`SCOPE`."""
    return (
        es.Dataquery()
        .ref_id("A")
        .datasource(DATASOURCE)
        .query(f"{SCOPE} AND {query}" if query else SCOPE)
        .time_field(TIME_FIELD)
        .metrics(list(metrics))
        .bucket_aggs(list(buckets))
    )


def over_time(field: str = TIME_FIELD) -> es.DateHistogram:
    """Buckets of Grafana's automatic interval; empty ones kept, so a line drops to zero."""
    return (
        es.DateHistogram()
        .id("9")
        .field(field)
        .settings(es.ElasticsearchDateHistogramSettings().interval("auto").min_doc_count("0"))
    )


def raw(size: int) -> es.RawData:
    """The newest ``size`` documents, whole."""
    return es.RawData().id("1").settings(es.ElasticsearchRawDataSettings().size(str(size)))
