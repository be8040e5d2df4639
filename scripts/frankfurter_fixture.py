#!/usr/bin/env python3
"""Writes tests/fixtures/frankfurter.json: requests to Frankfurter's v1 and v2 routes and the
answers Frankfurter gives for the ECB's data, for `tests/tests/frankfurter.rs`.

The answers are computed by a transcription of Frankfurter's own code (lineofflight/frankfurter:
lib/versions/v1/query.rb, quote/base.rb, quote/end_of_day.rb, quote/interval.rb, lib/roundable.rb,
lib/versions/v2/rate_query.rb, lib/bucket.rb) in Python floats, as Ruby computes them, over
examples/data/ecb-eurofxref-hist.csv; the two examples of its documentation are checked
against it below. fxflow computes in exact decimals: where the exact value sits on a rounding
midpoint, it rounds half to even, while Frankfurter rounds the nearest binary double, which lies
on either side. The script computes both and records each such place in the case's `midpoints`
(field path -> fxflow's exact answer); it fails if the two differ anywhere else.

Usage: scripts/frankfurter_fixture.py  (run again when the cases change)
"""
import csv
import datetime as dt
import decimal
from decimal import Decimal
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
TODAY = None  # open ranges end "today": the fixture's cases end on the data's last day anyway

def load():
    with open(ROOT / "examples/data/ecb-eurofxref-hist.csv") as f:
        rows = list(csv.reader(f))
    header = [c for c in rows[0] if c]
    days = {}
    for row in rows[1:]:
        if not row or not row[0]:
            continue
        rates = {}
        for code, cell in zip(header[1:], row[1:]):
            cell = cell.strip()
            if cell and cell != "N/A":
                rates[code] = cell
        days[row[0]] = rates
    return dict(sorted(days.items()))

DAYS = load()
DATES = list(DAYS)

def on_or_before(date):
    found = [d for d in DATES if d <= date]
    return found[-1] if found else None

EXACT = False  # True: compute in exact decimals, as fxflow does

def num(text):
    return Decimal(text) if EXACT else float(text)

def round_(v):
    if EXACT:
        dp = 0 if v > 5000 else 2 if v > 80 else 3 if v > 20 else 4 if v > 1 else 5 if v > Decimal("0.0001") else 6
        return v.quantize(Decimal(1).scaleb(-dp), rounding=decimal.ROUND_HALF_EVEN)
    if v > 5000:
        dp = 0
    elif v > 80:
        dp = 2
    elif v > 20:
        dp = 3
    elif v > 1:
        dp = 4
    elif v > 0.0001:
        dp = 5
    else:
        dp = 6
    return float(f"{v:.{dp}f}")

def v1_day(date, base, symbols, amount):
    rows = {q: num(r) for q, r in DAYS[date].items() if symbols is None or q in symbols or q == base}
    should_round = amount != 1 or base != "EUR"
    rates = {q: (round_(amount * r) if should_round else r) for q, r in rows.items()}
    if base != "EUR":
        if symbols is None or "EUR" in symbols:
            rates["EUR"] = amount
        divisor = rates.pop(base, None)
        if divisor is None or not rates:
            return None
        rates = {q: round_(amount * r / divisor) for q, r in sorted(rates.items())}
    else:
        rates = dict(sorted(rates.items()))
    return rates or None

def v1(path, params):
    base = (params.get("from") or params.get("base") or "EUR").upper()
    base_given = "from" in params or "base" in params
    symbols = params.get("to") or params.get("symbols")
    symbols = symbols.upper().split(",") if symbols else None
    amount = num(params.get("amount", "1"))
    if "amount" in params and amount <= 0:
        return 422, {"message": "invalid amount"}
    if base_given and symbols == [base]:
        return 422, {"message": "bad currency pair"}
    segment = path[len("/v1/"):]
    if segment == "currencies":
        return 200, None  # names: checked by the test against RubyMoney's table
    if ".." in segment:
        start, end = segment.split("..")
        end = end or DATES[-1]
        snapped = on_or_before(start) or start
        out = {}
        for d in DATES:
            if snapped <= d <= end:
                r = v1_day(d, base, symbols, amount)
                if r:
                    out[d] = r
        if not out:
            return 404, {"message": "not found"}
        dates = list(out)
        return 200, {"amount": amount, "base": base, "start_date": dates[0], "end_date": dates[-1], "rates": out}
    try:
        dt.date.fromisoformat(segment)
    except ValueError:
        return 422, {"message": "invalid date"}
    day = on_or_before(segment)
    rates = v1_day(day, base, symbols, amount) if day else None
    if not rates:
        return 404, {"message": "not found"}
    return 200, {"amount": amount, "base": base, "date": day, "rates": rates}

def v2_rows(date, rates, base, quotes, raw):
    eur = lambda c: num("1") if c == "EUR" else rates.get(c)
    divisor = eur(base)
    if divisor is None:
        return []
    out = []
    for q in sorted(list(rates) + ["EUR"]):
        if q == base or (quotes is not None and q not in quotes):
            continue
        r = eur(q)
        out.append({"date": date, "base": base, "quote": q, "rate": r if (base == "EUR" and raw) else round_(r / divisor)})
    if out and (quotes is None or base in quotes):
        out.append({"date": date, "base": base, "quote": base, "rate": num("1.0")})
        out.sort(key=lambda row: row["quote"])
    return out

def bucket(date, group):
    d = dt.date.fromisoformat(date)
    if group == "month":
        return d.replace(day=1).isoformat()
    return (dt.date(d.year, 1, 1) + dt.timedelta(days=7 * int(d.strftime("%W")))).isoformat()

ALLOWED = ["base", "quotes", "providers", "date", "from", "to", "group", "expand"]

def v2_rates(params, base=None, quotes=None):
    unknown = [k for k in params if k not in ALLOWED]
    if unknown:
        return 422, {"status": 422, "message": "unknown parameter: " + ", ".join(unknown)}
    base = (base or params.get("base") or "EUR").upper()
    quotes = quotes or params.get("quotes")
    quotes = quotes.upper().split(",") if quotes else None
    known = set(DAYS[DATES[-1]]) | set(DAYS[DATES[0]]) | {"EUR", "UAH"}
    bad = [c for c in [base] + (quotes or []) if c not in known]
    if bad:
        return 422, {"status": 422, "message": "invalid currency: " + ", ".join(bad)}
    nums = lambda rates: {q: num(r) for q, r in rates.items()}
    if "from" in params:
        start, end = params["from"], params.get("to", DATES[-1])
        days = [d for d in DATES if start <= d <= end]
        rows = []
        if "group" in params:
            buckets = {}
            for d in days:
                for q, r in DAYS[d].items():
                    buckets.setdefault(bucket(d, params["group"]), {}).setdefault(q, []).append(num(r))
            for b, rates in sorted(buckets.items()):
                rows += v2_rows(b, {q: sum(v) / len(v) for q, v in rates.items()}, base, quotes, False)
            return 200, rows
        if not days or days[0] != start:
            anchor = on_or_before(start)
            if anchor:
                rows += v2_rows(anchor, nums(DAYS[anchor]), base, quotes, True)
        for d in days:
            rows += v2_rows(d, nums(DAYS[d]), base, quotes, True)
        return 200, rows
    day = on_or_before(params.get("date", DATES[-1]))
    return 200, (v2_rows(day, nums(DAYS[day]), base, quotes, True) if day else [])

def v2(path, params):
    if path == "/v2/rates":
        return v2_rates(params)
    if path.startswith("/v2/rate/"):
        base, quote = path[len("/v2/rate/"):].split("/")
        status, rows = v2_rates(params, base, quote)
        if status != 200:
            return status, rows
        return (200, rows[0]) if rows else (404, {"status": 404, "message": "not found"})
    if path.startswith("/v2/currency/"):
        code = path.rsplit("/", 1)[1].upper()
        dates = [d for d in DATES if code in DAYS[d] or code == "EUR"]
        if not dates:
            return 404, {"status": 404, "message": "not found"}
        return 200, {"iso_code": code, "start_date": dates[0], "end_date": dates[-1], "providers": ["ECB"]}
    raise ValueError(path)

CASES = [
    # v1: ECB days across 1999-2026, every currency, bases, amounts, weekends, ranges.
    ("/v1/1999-01-04", {}),
    ("/v1/1999-01-04", {"base": "USD", "symbols": "EUR"}),
    ("/v1/2002-05-11", {}),  # a Saturday: the Friday before
    ("/v1/2008-12-25", {"from": "GBP"}),  # Christmas: the last business day before
    ("/v1/2015-06-15", {"base": "CHF", "symbols": "EUR,USD,JPY,CZK,HUF"}),
    ("/v1/2016-06-24", {"from": "GBP", "to": "USD,EUR"}),
    ("/v1/2020-03-16", {"from": "JPY", "to": "USD,EUR,CHF", "amount": "1000"}),
    ("/v1/2023-04-06", {"base": "IDR", "symbols": "EUR,USD,KRW"}),
    ("/v1/2026-10-30", {"amount": "2.5"}),
    ("/v1/2026-10-30", {"base": "ISK"}),
    ("/v1/1999-12-20..2000-01-10", {"symbols": "USD,JPY,CYP"}),
    ("/v1/2024-12-20..2025-01-10", {"base": "USD", "symbols": "EUR,GBP"}),
    ("/v1/2026-10-24..", {"to": "USD"}),
    ("/v1/1998-12-31", {}),
    ("/v1/2020-01-02", {"base": "UAH"}),
    ("/v1/2020-02-30", {}),
    ("/v1/2020-01-02", {"from": "USD", "to": "USD"}),
    ("/v1/2020-01-02", {"amount": "0"}),
    # v2 as its providers=ecb answers.
    ("/v2/rates", {"date": "2010-07-04", "providers": "ecb"}),
    ("/v2/rates", {"base": "USD", "quotes": "EUR,JPY,GBP,USD", "date": "2001-09-11"}),
    ("/v2/rates", {"from": "2024-01-01", "to": "2024-01-31", "quotes": "USD,JPY", "group": "week"}),
    ("/v2/rates", {"from": "2023-01-01", "to": "2023-12-31", "base": "GBP", "quotes": "CHF", "group": "month"}),
    ("/v2/rates", {"from": "2026-10-24", "quotes": "USD"}),
    ("/v2/rates", {"from": "2003-03-01", "to": "2003-03-10", "base": "JPY", "quotes": "EUR,CYP"}),
    ("/v2/rate/GBP/USD", {"date": "2016-06-24"}),
    ("/v2/rate/usd/jpy", {}),
    ("/v2/rates", {"quotes": "XYZ"}),
    ("/v2/rates", {"symbols": "USD", "amount": "2"}),
    ("/v2/rates", {"date": "1998-01-01"}),
    ("/v2/rate/EUR/XYZ", {}),
    ("/v2/currency/CYP", {}),
    ("/v2/currency/uah", {}),
]

def midpoints(float_body, exact_body, at=""):
    """Places where the float answer and the exact one differ: each must be a rounding midpoint."""
    found = {}
    if isinstance(float_body, dict):
        for k in float_body:
            found.update(midpoints(float_body[k], exact_body[k], f"{at}.{k}" if at else k))
    elif isinstance(float_body, list):
        for i, (a, b) in enumerate(zip(float_body, exact_body)):
            found.update(midpoints(a, b, f"{at}[{i}]"))
    elif isinstance(float_body, float) and Decimal(repr(float_body)) != exact_body:
        ulp = Decimal(1).scaleb(exact_body.as_tuple().exponent)
        if abs(Decimal(repr(float_body)) - exact_body) != ulp:
            raise AssertionError(f"{at}: float {float_body} vs exact {exact_body}: not a midpoint")
        found[at] = str(exact_body)
    return found

def main():
    global EXACT
    # The documentation's own examples (frankfurter.dev/v1).
    assert v1("/v1/1999-01-04", {"base": "USD", "symbols": "EUR"})[1]["rates"] == {"EUR": 0.84825}
    assert v1("/v1/2000-01-01..2000-12-31", {})[1]["start_date"] == "1999-12-30"
    cases = []
    for path, params in CASES:
        params = dict(sorted(params.items()))
        route = v1 if path.startswith("/v1/") else v2
        EXACT = False
        status, body = route(path, params)
        EXACT = True
        _, exact = route(path, params)
        EXACT = False
        case = {"path": path, "params": params, "status": status, "body": body}
        differ = midpoints(body, exact) if body is not None else {}
        if differ:
            case["midpoints"] = differ
        cases.append(case)
    out = ROOT / "tests/fixtures/frankfurter.json"
    out.write_text(json.dumps({"source": __doc__.strip().splitlines()[0], "cases": cases}, indent=1) + "\n")
    print(f"{len(cases)} cases -> {out.relative_to(ROOT)}")

if __name__ == "__main__":
    main()
