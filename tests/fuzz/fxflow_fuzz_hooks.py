"""Schemathesis hooks of the API fuzz test (tests/tests/api_fuzz.rs).

The OpenAPI document states every rule on a single input that JSON Schema can
express, and the fuzz test holds the server to it both ways: what the schema
admits is accepted, what it refuses is refused. The rules below span fields or
depend on the deployment, so no schema can state them; the document names them
in the operations' descriptions. A schema-valid request that breaks one is
refused with exactly the error code (or, on POST /alerts, the fields) named
here, and that refusal is not a failure. Any other refusal of valid data is.
"""

import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

# 400 error codes of rules across fields.
CROSS_FIELD_CODES = {
    "invalid_range": "`from` after `to` (every time range)",
    "same_currency": "`to` equal to `from` (/convert)",
    "invalid_cursor": "a cursor the API never issued (`after`, `before`): cursors are opaque",
    "page_too_large": "`limit` above the stage's `limits.max_page` for a JSON page (CSV exports take more)",
    "backtest_too_large": "a backtest over more than 366 days (or more stored samples than one request reads)",
}

# Fields of a 422 `validation_failed` from POST /alerts whose rules depend on the deployment
# or span fields.
DEPLOYMENT_FIELDS = {
    "pair": "a pair this API does not monitor, or not written in market convention",
    "webhook.url": "a host name this server refuses (loopback or private names: SSRF)",
    # Not the deployment, but a rule across two fields all the same: a channel's bounds.
    "condition.high": "a channel's `high` not above its `low`",
    # A duration's pattern cannot bound it: a `stale` condition's `max_age` is at most 366 days.
    "condition.max_age": "a `stale` condition's `max_age` over 366 days",
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
            # A backtest names a rule's fields as `rules[2].pair`.
            and all(re.sub(r"^rules\[\d+\]\.", "", d.get("field", "")) in DEPLOYMENT_FIELDS for d in details)
        ):
            return None
    return positive_data_acceptance(ctx, response, case)


def _instant(text):
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except (ValueError, OverflowError, TypeError):
        return None


@schemathesis.hook
def map_case(ctx, case):
    """Positive cases that reach the business logic.

    The rules named above refuse schema-valid data that breaks them, and random data breaks
    them most of the time: a random `after`/`before` is never a cursor the API issued, a random
    `from` is after a random `to` half the time, and a backtest sends up to 20 rules, one bad
    rule refusing them all. Then a phase can see no positive case served, which schemathesis
    reports as a schema that does not match the server. So in positive cases only (negative
    ones are left alone) the generator follows those rules, as schemathesis advises: no
    cursor the API never issued, `from` not after `to`, and in a backtest every rule on a
    monitored pair with its channel's bounds in order and a `stale` rule's `max_age` within
    366 days, over at most 366 days.
    """
    meta = getattr(case, "meta", None)
    if meta is None or "positive" not in str(meta.generation.mode).lower():
        return case
    query = case.query if isinstance(case.query, dict) else None
    if query is not None:
        for cursor in ("after", "before"):
            query.pop(cursor, None)
        start, end = _instant(query.get("from")), _instant(query.get("to"))
        if start is not None and end is not None and start > end:
            query["from"], query["to"] = query["to"], query["from"]
    operation = getattr(case, "operation", None)
    if operation is None or operation.path != "/alerts/backtest" or operation.method.upper() != "POST":
        return case
    body = case.body
    if not isinstance(body, dict):
        return case
    body.pop("after", None)
    for rule in body.get("rules") or []:
        if not isinstance(rule, dict):
            continue
        rule["pair"] = "EUR/USD"
        condition = rule.get("condition")
        if isinstance(condition, dict) and condition.get("type") == "stale":
            condition["max_age"] = "26h"  # the pattern cannot bound it to 366 days
        if isinstance(condition, dict) and "low" in condition and "high" in condition:
            try:
                low, high = Decimal(str(condition["low"])), Decimal(str(condition["high"]))
            except InvalidOperation:
                continue
            if low > high:
                condition["low"], condition["high"] = condition["high"], condition["low"]
    start, end = _instant(body.get("from")), _instant(body.get("to"))
    if start is not None and end is not None and not timedelta(0) <= end - start <= timedelta(days=366):
        try:
            body["to"] = (start + timedelta(days=30)).isoformat()
        except OverflowError:
            pass
    return case
