"""Elasticsearch: document layout, index templates and the spool sink (mlwatch[elasticsearch])."""
