"""The fakes refuse what the providers refuse: deliberately wrong requests (each off the
documented spec in one way) get the provider's error, so every check the target tests
rely on can fail."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import pytest
from standardwebhooks import Webhook

from tests.alerting.providers import (
    WORKFLOW_INPUTS,
    FakeGitHub,
    FakeGitLab,
    FakeJenkins,
    FakeWebhookReceiver,
    new_whsec,
    send_raw,
)
from tests.alerting.targets.conftest import (
    GITHUB_TOKEN,
    GITLAB_TOKEN,
    JENKINS_API_TOKEN,
    JENKINS_PASSWORD,
    WEBHOOK_SECRET,
)

# --- GitHub ------------------------------------------------------------------------

GH_HEADERS = {
    "Accept": "application/vnd.github+json",
    "Authorization": f"Bearer {GITHUB_TOKEN}",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": "test",
    "Content-Type": "application/json",
}
GOOD_INPUTS = {name: "x" for name in WORKFLOW_INPUTS}
DISPATCH = "/repos/acme/models/actions/workflows/retrain.yml/dispatches"


def gh(
    fake: FakeGitHub,
    body: Any = None,
    *,
    path: str = DISPATCH,
    method: str = "POST",
    drop: str | None = None,
    **headers: str,
) -> tuple[int, str]:
    sent = {k: v for k, v in GH_HEADERS.items() if k != drop}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    if body is None:
        data = json.dumps({"ref": "main", "inputs": GOOD_INPUTS}).encode()
    status, _, answer = send_raw(method, fake.origin + path, sent, data)
    try:
        return status, json.loads(answer)["message"]
    except ValueError:
        return status, answer.decode()


def test_github_accepts_a_documented_request(github: FakeGitHub) -> None:
    assert gh(github)[0] == 204 and len(github.runs) == 1


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"method": "GET"}, 404, "Not Found"),
        ({"method": "PUT"}, 404, "Not Found"),
        ({"path": "/repos/acme/models/actions/workflows/other.yml/dispatches"}, 404, "Not Found"),
        ({"path": "/repos/acme/other/dispatches"}, 404, "Not Found"),
        ({"path": "/repos/acme/models/actions/workflows/retrain.yml/dispatch"}, 404, "Not Found"),
        ({"drop": "User-Agent"}, 403, "User-Agent"),
        ({"drop": "Authorization"}, 401, "Requires authentication"),
        ({"Authorization": "Bearer ghp_wrong"}, 401, "Bad credentials"),
        ({"drop": "Accept"}, 415, "Unsupported 'Accept' header"),
        ({"Accept": "application/json"}, 415, "Unsupported 'Accept' header"),
        ({"drop": "X-GitHub-Api-Version"}, 400, "X-GitHub-Api-Version"),
        ({"X_GitHub_Api_Version": "2021-01-01"}, 400, "is not supported"),
        ({"body": b"{not json"}, 400, "Problems parsing JSON"),
        ({"body": {"inputs": GOOD_INPUTS}}, 422, '"ref" wasn\'t supplied'),
        ({"body": {"ref": 1}}, 422, "is not a string"),
        ({"body": {"ref": "nope", "inputs": GOOD_INPUTS}}, 422, "No ref found for: nope"),
        ({"body": {"ref": "main", "inputs": {**GOOD_INPUTS, "model": 3}}}, 422, "is not a string"),
        (
            {"body": {"ref": "main", "inputs": {**GOOD_INPUTS, "extra": "x"}}},
            422,
            "Unexpected inputs",
        ),
        (
            {"body": {"ref": "main", "inputs": {f"i{n}": "x" for n in range(26)}}},
            422,
            "more than 25",
        ),
        (
            {"body": {"ref": "main", "inputs": {"model": "m"}}},
            422,
            "Required input 'idempotency_key'",
        ),
        (
            {"body": {"ref": "main", "inputs": GOOD_INPUTS, "wait": True}},
            422,
            "not a permitted key",
        ),
    ],
)
def test_github_refuses_off_spec_workflow_dispatches(
    github: FakeGitHub, change: dict[str, Any], status: int, message: str
) -> None:
    body = change.pop("body", None)
    got_status, got_message = gh(github, body, **change)
    assert (got_status, message in got_message) == (status, True), got_message
    assert github.runs == []


def test_github_enterprise_limit_of_ten_inputs() -> None:
    with FakeGitHub(token=GITHUB_TOKEN, enterprise=True, max_inputs=10) as ghes:
        many = {**GOOD_INPUTS, **{f"more{n}": "x" for n in range(3)}}
        assert gh(ghes, {"ref": "main", "inputs": many}, path="/api/v3" + DISPATCH)[0] == 422
        assert gh(ghes, path=DISPATCH)[0] == 404  # not under /api/v3
        assert gh(ghes, path="/api/v3" + DISPATCH)[0] == 204


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"client_payload": {}}, '"event_type" wasn\'t supplied'),
        ({"event_type": "e" * 101}, "1 to 100 characters"),
        ({"event_type": "e", "client_payload": {f"k{n}": n for n in range(11)}}, "more than 10"),
        ({"event_type": "e", "client_payload": []}, "not an object"),
        ({"event_type": "e", "inputs": {}}, "not a permitted key"),
    ],
)
def test_github_refuses_off_spec_repository_dispatches(
    github: FakeGitHub, body: dict[str, Any], message: str
) -> None:
    status, got = gh(github, body, path="/repos/acme/models/dispatches")
    assert status == 422 and message in got, got
    assert gh(github, {"event_type": "e"}, path="/repos/acme/models/dispatches")[0] == 204


def test_forced_answers_then_normal_service(github: FakeGitHub) -> None:
    github.fail_next(2, 429, retry_after="9")
    status, headers, body = send_raw("POST", github.url + DISPATCH, GH_HEADERS, b"{}")
    assert status == 429 and headers["retry-after"] == "9"
    assert json.loads(body)["documentation_url"].startswith("https://docs.github.com/")
    assert send_raw("POST", github.url + DISPATCH, GH_HEADERS, b"{}")[0] == 429
    assert gh(github)[0] == 204


# --- GitLab ------------------------------------------------------------------------

GL_PATH = "/api/v4/projects/ml%2Fchurn-models/trigger/pipeline"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def gl(
    fake: FakeGitLab, form: dict[str, str], *, path: str = GL_PATH, method: str = "POST"
) -> tuple[int, Any]:
    status, _, body = send_raw(method, fake.url + path, FORM, urlencode(form).encode())
    return status, json.loads(body)


GOOD_FORM = {"token": GITLAB_TOKEN, "ref": "main", "variables[MLWATCH_MODEL]": "churn"}


def test_gitlab_accepts_form_json_and_numeric_id(gitlab: FakeGitLab) -> None:
    assert gl(gitlab, GOOD_FORM)[0] == 201
    assert gl(gitlab, GOOD_FORM, path="/api/v4/projects/42/trigger/pipeline")[0] == 201
    body = json.dumps({"token": GITLAB_TOKEN, "ref": "main", "variables": {"A": "b"}}).encode()
    status, _, _ = send_raw(
        "POST", gitlab.url + GL_PATH, {"Content-Type": "application/json"}, body
    )
    assert status == 201 and gitlab.pipelines[-1]["variables"] == {"A": "b"}


@pytest.mark.parametrize(
    ("form", "kwargs", "status", "answer"),
    [
        ({"ref": "main"}, {}, 400, {"error": "token is missing"}),
        ({"token": GITLAB_TOKEN}, {}, 400, {"error": "ref is missing"}),
        ({**GOOD_FORM, "token": "glptt-wrong"}, {}, 404, {"message": "404 Not Found"}),
        ({**GOOD_FORM, "ref": "nope"}, {}, 400, {"message": {"base": ["Reference not found"]}}),
        (
            GOOD_FORM,
            {"path": "/api/v4/projects/ml/churn-models/trigger/pipeline"},
            404,
            {"error": "404 Not Found"},
        ),
        (
            GOOD_FORM,
            {"path": "/api/v4/projects/43/trigger/pipeline"},
            404,
            {"message": "404 Project Not Found"},
        ),
        (GOOD_FORM, {"method": "GET"}, 405, {"error": "405 Not Allowed"}),
    ],
)
def test_gitlab_refuses_off_spec_triggers(
    gitlab: FakeGitLab, form: dict[str, str], kwargs: dict[str, str], status: int, answer: Any
) -> None:
    assert gl(gitlab, form, **kwargs) == (status, answer)
    assert gitlab.pipelines == []


def test_gitlab_refuses_non_string_variables(gitlab: FakeGitLab) -> None:
    body = json.dumps({"token": GITLAB_TOKEN, "ref": "main", "variables": {"A": 1}}).encode()
    status, _, answer = send_raw(
        "POST", gitlab.url + GL_PATH, {"Content-Type": "application/json"}, body
    )
    assert status == 400 and json.loads(answer) == {"error": "variables is invalid"}


# --- Jenkins -----------------------------------------------------------------------


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def build(
    fake: FakeJenkins, headers: dict[str, str], *, method: str = "POST", job: str = "job/retrain"
) -> tuple[int, dict[str, str], bytes]:
    return send_raw(
        method, f"{fake.url}/{job}/buildWithParameters", {**FORM, **headers}, b"MLWATCH_MODEL=churn"
    )


def crumb(
    fake: FakeJenkins, user: str = "alice", secret: str = JENKINS_PASSWORD
) -> tuple[str, str]:
    status, headers, body = send_raw(
        "GET", f"{fake.url}/crumbIssuer/api/json", {"Authorization": basic(user, secret)}
    )
    assert status == 200
    doc = json.loads(body)
    assert doc["crumbRequestField"] == "Jenkins-Crumb"
    return doc["crumb"], headers["set-cookie"].split(";")[0]


def test_jenkins_api_token_needs_no_crumb(jenkins: FakeJenkins) -> None:
    status, headers, _ = build(jenkins, {"Authorization": basic("mlwatch-bot", JENKINS_API_TOKEN)})
    assert status == 201 and headers["location"].endswith("/queue/item/101/")


def test_jenkins_password_with_crumb_and_session_is_accepted(jenkins: FakeJenkins) -> None:
    value, cookie = crumb(jenkins)
    auth = basic("alice", JENKINS_PASSWORD)
    status, _, _ = build(jenkins, {"Authorization": auth, "Jenkins-Crumb": value, "Cookie": cookie})
    assert status == 201


def test_jenkins_refuses_a_password_post_without_a_valid_crumb(jenkins: FakeJenkins) -> None:
    auth = basic("alice", JENKINS_PASSWORD)
    value, cookie = crumb(jenkins)
    other_value, other_cookie = crumb(jenkins)  # a second session
    for headers in (
        {"Authorization": auth},  # no crumb
        {"Authorization": auth, "Jenkins-Crumb": value},  # crumb without its session
        {"Authorization": auth, "Cookie": cookie},  # session without the crumb
        {"Authorization": auth, "Jenkins-Crumb": value, "Cookie": other_cookie},  # other session
        {"Authorization": auth, "Jenkins-Crumb": "forged", "Cookie": cookie},
    ):
        status, _, body = build(jenkins, headers)
        assert status == 403 and b"No valid crumb was included in the request" in body, headers
    assert jenkins.queue == [] and other_value != value


@pytest.mark.parametrize(
    ("headers", "kwargs", "status", "words"),
    [
        (
            {"Authorization": basic("alice", "wrong")},
            {},
            401,
            b"Invalid password/token for user: alice",
        ),
        ({"Authorization": basic("mlwatch-bot", "wrong")}, {}, 401, b"Invalid password/token"),
        ({}, {}, 403, b"Authentication required"),
        (
            {"Authorization": basic("mlwatch-bot", JENKINS_API_TOKEN)},
            {"method": "GET"},
            405,
            b"Method Not Allowed",
        ),
        (
            {"Authorization": basic("mlwatch-bot", JENKINS_API_TOKEN)},
            {"job": "job/nope"},
            404,
            b"Not Found",
        ),
    ],
)
def test_jenkins_refuses_off_spec_builds(
    jenkins: FakeJenkins, headers: dict[str, str], kwargs: dict[str, str], status: int, words: bytes
) -> None:
    got, _, body = build(jenkins, headers, **kwargs)
    assert got == status and words in body
    assert jenkins.queue == []


def test_jenkins_drops_undefined_parameters() -> None:
    with FakeJenkins(api_tokens={"bot": "t"}, jobs={"job/retrain": ("MLWATCH_MODEL",)}) as fake:
        body = b"MLWATCH_MODEL=churn&SNEAKY=1"
        status, _, _ = send_raw(
            "POST",
            f"{fake.url}/job/retrain/buildWithParameters",
            {**FORM, "Authorization": basic("bot", "t")},
            body,
        )
    assert status == 201
    assert fake.queue[0]["params"] == {"MLWATCH_MODEL": "churn"} and fake.queue[0]["ignored"] == [
        "SNEAKY"
    ]


# --- Standard Webhooks -------------------------------------------------------------


def event(**overrides: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": "io.mlwatch.retrain.requested",
        "source": "/mlwatch",
        "id": "msg-1",
        "time": "2026-07-02T00:00:05Z",
        "datacontenttype": "application/json",
        "data": {"model": "churn"},
        **overrides,
    }


def deliver(
    fake: FakeWebhookReceiver,
    doc: dict[str, Any],
    *,
    secret: str = WEBHOOK_SECRET,
    msg_id: str | None = None,
    when: datetime | None = None,
    content_type: str = "application/cloudevents+json",
    drop: str | None = None,
) -> tuple[int, str]:
    body = json.dumps(doc).encode()
    when = when or datetime.now(timezone.utc)
    msg_id = msg_id or str(doc.get("id"))
    headers = {
        "Content-Type": content_type,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body),
    }
    headers.pop(drop or "", None)
    status, _, answer = send_raw("POST", fake.url, headers, body)
    return status, json.loads(answer)["error"] if answer else ""


def test_webhook_receiver_accepts_a_signed_cloudevent(receiver: FakeWebhookReceiver) -> None:
    assert deliver(receiver, event()) == (204, "")
    assert deliver(receiver, event()) == (204, "")  # the same webhook-id: acknowledged
    assert len(receiver.events) == 1 and receiver.duplicates == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "words"),
    [
        ({"secret": new_whsec()}, 401, "No matching signature found"),
        ({"drop": "webhook-signature"}, 401, "Missing required headers"),
        ({"drop": "webhook-id"}, 401, "Missing required headers"),
        ({"when": datetime.now(timezone.utc) - timedelta(minutes=10)}, 401, "too old"),
        ({"content_type": "application/json"}, 415, "application/cloudevents+json"),
        ({"msg_id": "another-id"}, 400, "webhook-id differs"),
        ({"doc": event(specversion="0.3")}, 400, "specversion"),
        ({"doc": {k: v for k, v in event().items() if k != "source"}}, 400, "'source'"),
        ({"doc": event(id=""), "msg_id": "msg-1"}, 400, "'id'"),
        ({"doc": event(time="yesterday")}, 400, "RFC 3339"),
        ({"doc": event(type="com.example.other")}, 400, "unexpected event type"),
        ({"doc": event(datacontenttype="text/plain")}, 400, "datacontenttype"),
        ({"doc": event(**{"Bad-Name": 1})}, 400, "attribute name"),
    ],
)
def test_webhook_receiver_refuses_off_spec_deliveries(
    receiver: FakeWebhookReceiver, kwargs: dict[str, Any], status: int, words: str
) -> None:
    doc = kwargs.pop("doc", event())
    got, error = deliver(receiver, doc, **kwargs)
    assert got == status and words in error, error
    assert receiver.events == {}
