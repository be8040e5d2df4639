"""Schemathesis hooks of the API fuzz test (tests/tests/api_fuzz.rs).

The OpenAPI document states every rule on a single input that JSON Schema can
express, and the fuzz test holds the server to it both ways: what the schema
admits is accepted, what it refuses is refused. The rules below span fields or
depend on the deployment, so no schema can state them; the document names them
in the operations' descriptions. A schema-valid request that breaks one is
refused with exactly the error code (or, on POST /alerts, the fields) named
here, and that refusal is not a failure. Any other refusal of valid data is.
"""

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

# 400 error codes of rules across fields.
CROSS_FIELD_CODES = {
    "invalid_range": "`from` after `to` (every time range)",
    "same_currency": "`to` equal to `from` (/convert)",
    "invalid_cursor": "a cursor the API never issued (`after`, `before`): cursors are opaque",
    "page_too_large": "`limit` above the stage's `limits.max_page` for a JSON page (CSV exports take more)",
}

# Fields of a 422 `validation_failed` from POST /alerts whose rules depend on the deployment
# or span fields.
DEPLOYMENT_FIELDS = {
    "pair": "a pair this API does not monitor, or not written in market convention",
    "webhook.url": "a host name this server refuses (loopback or private names: SSRF)",
    # Not the deployment, but a rule across two fields all the same: a channel's bounds.
    "condition.high": "a channel's `high` not above its `low`",
}


def _error(response):
    try:
        body = response.json()
    except Exception:
        return None
    return body.get("error") if isinstance(body, dict) else None


@schemathesis.check
def positive_data_acceptance_but_named_rules(ctx, response, case):
    error = _error(response)
    if error is not None:
        if response.status_code == 400 and error.get("code") in CROSS_FIELD_CODES:
            return None
        details = error.get("details") or []
        if (
            response.status_code == 422
            and error.get("code") == "validation_failed"
            and details
            and all(d.get("field") in DEPLOYMENT_FIELDS for d in details)
        ):
            return None
    return positive_data_acceptance(ctx, response, case)
