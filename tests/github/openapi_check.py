"""Check requests and responses against GitHub's OpenAPI description.

The description (``shared/data/github-openapi-subset.json``) is OpenAPI 3.0;
it is converted to JSON Schema once: ``nullable`` becomes "or null" (enums
included) and ``oneOf`` becomes ``anyOf``, because GitHub's own examples break
the strict readings of both (see the data README).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

REPO_ROOT = Path(__file__).resolve().parents[2]
NOT_A_JSON_SCHEMA_KEYWORD = ("discriminator", "example", "examples", "format", "xml", "externalDocs",
                             "deprecated", "readOnly", "writeOnly")


def shared_dir() -> Path:
    return Path(os.environ.get("RALLY_SHARED") or REPO_ROOT.parent / "shared")


def _to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _to_json_schema(sub) for name, sub in value.items()}
        elif key in NOT_A_JSON_SCHEMA_KEYWORD or key == "nullable":
            continue
        elif key == "oneOf":
            out["anyOf"] = _to_json_schema(value)
        else:
            out[key] = _to_json_schema(value)
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pointer: str
    spec: dict[str, Any]


class OpenApi:
    def __init__(self, path: Path) -> None:
        self.document = _to_json_schema(json.loads(path.read_text()))
        self._operations: list[tuple[re.Pattern[str], Operation]] = []
        for template, item in self.document["paths"].items():
            pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
            for method, operation in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    pointer = "#/paths/" + template.replace("~", "~0").replace("/", "~1") + "/" + method
                    self._operations.append((pattern, Operation(method.upper(), template, pointer, operation)))
        # The most literal template wins: /issues/comments/{id} over /issues/{number}/...
        self._operations.sort(key=lambda entry: -len(re.sub(r"\{[^}]+\}", "", entry[1].template)))

    def operation(self, method: str, path: str) -> Operation | None:
        return next((op for pattern, op in self._operations if op.method == method and pattern.match(path)), None)

    def _errors(self, pointer: str, instance: Any) -> list[str]:
        validator = Draft7Validator({**self.document, "$ref": pointer})
        return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
                for e in validator.iter_errors(instance)]

    def check(self, method: str, path: str, request: Any, status: int, response: Any) -> list[str]:
        """Problems with one exchange, each a line naming the operation and the field."""
        if (method, path) == ("POST", "/api/graphql"):
            return graphql_problems(request, status, response)
        op = self.operation(method, path)
        if op is None:
            return [] if status == 501 else [f"{method} {path}: not an operation of the OpenAPI subset"]
        problems = []
        body_spec = op.spec.get("requestBody", {}).get("content", {}).get("application/json")
        if request is not None:
            if body_spec is None:
                problems.append(f"{method} {op.template}: a body was sent to an operation that takes none")
            else:
                problems += [f"{method} {op.template} request: {e}"
                             for e in self._errors(op.pointer + "/requestBody/content/application~1json/schema", request)]
        responses = op.spec.get("responses", {})
        if str(status) in responses:
            content = responses[str(status)].get("content", {}).get("application/json")
            if content is None:
                if response not in (None, "", {}) and status == 204:
                    problems.append(f"{method} {op.template} {status}: a body where none is documented")
            else:
                pointer = f"{op.pointer}/responses/{status}/content/application~1json/schema"
                problems += [f"{method} {op.template} {status} response: {e}" for e in self._errors(pointer, response)]
        elif status >= 400:
            problems += [f"{method} {op.template} {status} error: {e}"
                         for e in self._errors("#/components/schemas/basic-error", response)]
        else:
            problems.append(f"{method} {op.template}: status {status} is not documented")
        return problems


# GraphQL is outside the OpenAPI description. The two mutations the client sends,
# as GitHub's GraphQL reference documents them: the request is {query, variables},
# the answer {data: {<mutation>: {clientMutationId, pullRequest: {isDraft}}}} or,
# for a node it cannot resolve, 200 with data null and an "errors" list.
_GRAPHQL_PAYLOAD = {"type": ["object", "null"], "required": ["clientMutationId", "pullRequest"],
                    "properties": {"clientMutationId": {"type": ["string", "null"]},
                                   "pullRequest": {"type": "object", "required": ["isDraft"],
                                                   "properties": {"isDraft": {"type": "boolean"}}}}}
_GRAPHQL_REQUEST = {"type": "object", "required": ["query", "variables"], "additionalProperties": False,
                    "properties": {"query": {"type": "string"},
                                   "variables": {"type": "object", "required": ["input"], "properties": {
                                       "input": {"type": "object", "required": ["pullRequestId"],
                                                 "properties": {"pullRequestId": {"type": "string"},
                                                                "clientMutationId": {"type": "string"}},
                                                 "additionalProperties": False}}}}}
_GRAPHQL_RESPONSE = {"type": "object", "required": ["data"], "properties": {
    "data": {"type": ["object", "null"], "additionalProperties": False, "properties": {
        "markPullRequestReadyForReview": _GRAPHQL_PAYLOAD, "convertPullRequestToDraft": _GRAPHQL_PAYLOAD}},
    "errors": {"type": "array", "items": {"type": "object", "required": ["message"],
                                          "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                                                         "path": {"type": "array"}}}}}}


def graphql_problems(request: Any, status: int, response: Any) -> list[str]:
    if status == 501:
        return []
    problems = [f"POST /graphql request: {e.message[:300]}" for e in Draft7Validator(_GRAPHQL_REQUEST).iter_errors(request)]
    if status >= 400:  # a gateway error or a rate limit: the same answers as REST's
        return problems + [f"POST /graphql {status} error: {e.message[:300]}"
                           for e in Draft7Validator({"type": "object", "required": ["message"]}).iter_errors(response)]
    if status != 200:
        return problems + [f"POST /graphql: status {status} (GitHub answers GraphQL with 200)"]
    return problems + [f"POST /graphql response: {e.message[:300]}"
                       for e in Draft7Validator(_GRAPHQL_RESPONSE).iter_errors(response)]


@lru_cache(maxsize=1)
def github_openapi() -> OpenApi:
    return OpenApi(shared_dir() / "data" / "github-openapi-subset.json")
