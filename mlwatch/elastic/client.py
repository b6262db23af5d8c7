"""The Elasticsearch client from the settings, and installing the index design.

Credentials (API key, password) are passed to the client only; URLs are logged without
their user-info part.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mlwatch.elastic import templates
from mlwatch.settings import Config

#: Room for one bulk answer per refused document, over the node's default bound.
RESPONSE_BYTES_PER_DOCUMENT = 4096

log = logging.getLogger("mlwatch.elasticsearch")

_JSON = {"content-type": "application/json", "accept": "application/json"}


def safe_url(url: str) -> str:
    """A URL without ``user:password@``, fit for logs.

    >>> safe_url("https://elastic:s3cret@es.example:9200/")
    'https://es.example:9200/'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def make_client(config: Config) -> Any:
    """An ``elasticsearch.Elasticsearch`` client from the settings (auth, TLS, timeouts),
    whose nodes bound each answer in size and in time (:mod:`mlwatch.elastic.node`)."""
    from elasticsearch import Elasticsearch

    from mlwatch.elastic.node import MAX_RESPONSE_BYTES, bounded_node

    hosts = [u.strip() for u in (config.elasticsearch_url or "").split(",") if u.strip()]
    if not hosts:
        raise ValueError("elasticsearch_url is empty")
    kwargs: dict[str, Any] = {
        "request_timeout": config.elasticsearch_timeout_s,
        "max_retries": 2,
        "retry_on_timeout": True,
        "http_compress": config.elasticsearch_compress,
        "node_class": bounded_node(
            max(MAX_RESPONSE_BYTES, config.elasticsearch_batch_size * RESPONSE_BYTES_PER_DOCUMENT)
        ),
    }
    if config.elasticsearch_api_key:
        kwargs["api_key"] = config.elasticsearch_api_key
    elif config.elasticsearch_username:
        kwargs["basic_auth"] = (config.elasticsearch_username, config.elasticsearch_password or "")
    if config.elasticsearch_ca_file:
        kwargs["ca_certs"] = config.elasticsearch_ca_file
    if not config.elasticsearch_verify_certs:
        kwargs["verify_certs"] = False
        kwargs["ssl_show_warn"] = False
    try:
        return Elasticsearch(hosts, **kwargs)
    except ValueError:  # the client's message quotes the URL, user-info included
        raise ValueError(
            "elasticsearch_url: cannot parse " + ", ".join(safe_url(h) for h in hosts)
        ) from None


def install_templates(client: Any, config: Config) -> bool:
    """PUT the ILM policy, component and index templates (idempotent). Returns whether
    ILM is available; without it the templates go in without a lifecycle setting."""
    from elasticsearch import ApiError

    ilm = True
    try:
        client.perform_request(
            "PUT",
            f"/_ilm/policy/{templates.POLICY}",
            body=templates.ilm_policy(config),
            headers=_JSON,
        )
    except ApiError as exc:
        if exc.meta.status not in (400, 404, 405) or "no handler" not in str(exc.body):
            raise
        ilm = False
        log.warning(
            "this Elasticsearch has no ILM: data streams are created without a "
            "lifecycle policy, so nothing is rolled over or deleted automatically"
        )
    for path, body in templates.all_objects(config, ilm=ilm).items():
        if path.startswith("_ilm/"):
            continue
        client.perform_request("PUT", "/" + path, body=body, headers=_JSON)
    return ilm
