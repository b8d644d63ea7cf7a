"""tests.fuzz.driver: property-based fuzzing of a live wayview from its own OpenAPI document.

schemathesis turns each operation of `/openapi.json` into a Hypothesis strategy of requests, in
two modes: *positive* (values the document allows) and *negative* (values it forbids: wrong
types, out-of-range numbers, junk path segments, stray parameters). Values that exist in the
world (`Known`) are mixed in so that requests get past "unknown id" into rendering, and `fields`
selections are drawn from the real field registry, nested. Each request carries a valid client or
user token, none, a token in the query, or whatever junk schemathesis made up.

Every answer is checked (`Report.check`): no status >= 500, no traceback text in the body, an
error body is the Graph envelope (the upload envelope on the upload session routes), and in
positive mode the answer is one the document promises (status, media type, JSON schema). The
run is bounded by a request count and a deadline; the server's memory is read from /proc.
Findings are collected, not raised, so one run reports all of them (no shrinking).
"""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException
from schemathesis import GenerationMode
from tests.fuzz.conformance import DocValidator, envelope_problems, traceback_in
from tests.fuzz.world import FuzzTarget, memory_kib

from wayview.api.app import Route, _routes, normalise_path
from wayview.blobs.base import IMAGE_VARIANTS
from wayview.model.fields import NODE_TYPES

#: The node type whose fields an operation's `fields` parameter selects (None: any type).
FIELDS_OF: dict[str, str | None] = {
    "getNode": None, "getNodes": None, "getNodesSdkForm": None, "getMe": "User",
    "getDetectionsOf": "Detection", "getImageTiles": "ImageTile", "searchImages": "Image",
    "getSequenceImages": "Image", "searchMapFeatures": "MapFeature",
    "searchDetections": "Detection",
}
#: Operations that need a user token to do anything (a client token gets E5/U1).
USER_OPERATIONS = {"getMe", "getUploadOffset", "appendUpload", "finishUpload"}


@dataclass(frozen=True)
class KnownBug:
    """A 500 the fuzzer found whose fix lies outside the fuzzing work: matching requests are
    counted and not sent until the fix lands (then delete the entry)."""

    operation: str
    description: str
    matches: Callable[[Any], bool]


KNOWN_BUGS: list[KnownBug] = []
#: Most findings kept per (kind, operation, status); all are counted.
KEEP_PER_KIND = 3
REQUEST_TIMEOUT_S = (5.0, 60.0)
RSS_EVERY = 250


@dataclass
class Finding:
    """One answer that broke a rule."""

    kind: str  # "server error", "traceback", "envelope", "document", "no answer"
    operation: str
    mode: str
    request: str
    status: int
    detail: str

    def __str__(self) -> str:
        return (f"[{self.kind}] {self.operation} ({self.mode}) → {self.status}: "
                f"{self.detail}\n    {self.request}")


@dataclass
class Report:
    """Counts of one fuzzing run."""

    requests: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    #: Answers checked against the document (positive mode, routed as documented).
    validated: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    kept: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    rss_start_kib: int = 0
    rss_end_kib: int = 0
    rss_peak_kib: int = 0
    hwm_peak_kib: int = 0
    log_tracebacks: int = 0
    elapsed_s: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    #: Requests not sent because they hit a known bug (KNOWN_BUGS), by its description.
    known: Counter[str] = field(default_factory=Counter)

    @property
    def server_errors(self) -> int:
        """Answers with a status >= 500."""
        return self.problems["server error"]

    @property
    def tracebacks(self) -> int:
        """Bodies with traceback text plus tracebacks in the server log."""
        return self.problems["traceback"] + self.log_tracebacks

    def add(self, finding: Finding) -> None:
        """Count a finding; keep the first few of each kind, operation and status."""
        self.problems[finding.kind] += 1
        key = (finding.kind, finding.operation, finding.status)
        if self.kept[key] < KEEP_PER_KIND:
            self.kept[key] += 1
            self.findings.append(finding)

    def sample_memory(self, target: FuzzTarget) -> None:
        """Read the server's resident memory (all its processes) and the worst peak."""
        total = 0
        for pid in target.pids():
            rss, hwm = memory_kib(pid)
            total += rss
            self.hwm_peak_kib = max(self.hwm_peak_kib, hwm)
        self.rss_peak_kib = max(self.rss_peak_kib, total)
        self.rss_end_kib = total
        if not self.rss_start_kib:
            self.rss_start_kib = total

    def to_json(self) -> dict[str, Any]:
        """The counts as plain JSON values (`dataclasses.asdict` mangles Counters)."""
        return {
            "requests": self.requests, "elapsed_s": round(self.elapsed_s, 1),
            "by_class": dict(self.by_class), "by_operation": dict(self.by_operation),
            "problems": dict(self.problems), "validated": dict(self.validated),
            "server_errors": self.server_errors, "tracebacks": self.tracebacks,
            "log_tracebacks": self.log_tracebacks,
            "rss_kib": {"start": self.rss_start_kib, "end": self.rss_end_kib,
                        "peak": self.rss_peak_kib, "largest_process_hwm": self.hwm_peak_kib},
            "known_bugs_not_sent": dict(self.known), "skipped": self.skipped,
            "findings": [vars(f) for f in self.findings],
        }

    def summary(self) -> str:
        """The counts as a few lines of text."""
        classes = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_class.items()))
        lines = [
            f"requests: {self.requests} in {self.elapsed_s:.0f} s "
            f"({self.requests / max(self.elapsed_s, 1e-9):.0f}/s)",
            f"responses by class: {classes}",
            f">= 500: {self.server_errors}   tracebacks: {self.tracebacks} "
            f"(bodies {self.problems['traceback']}, server log {self.log_tracebacks})   "
            f"envelope: {self.problems['envelope']}   document: {self.problems['document']}   "
            f"no answer: {self.problems['no answer']}",
            "checked against the document: " + ", ".join(
                f"{k}: {v}" for k, v in sorted(self.validated.items())),
            f"server RSS (all processes): start {self.rss_start_kib / 1024:.0f} MiB, "
            f"end {self.rss_end_kib / 1024:.0f} MiB, peak {self.rss_peak_kib / 1024:.0f} MiB; "
            f"largest process peak (VmHWM) {self.hwm_peak_kib / 1024:.0f} MiB",
            "requests per operation: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.by_operation.items())),
        ]
        lines += [f"left out: {op}: {why}" for op, why in self.skipped.items()]
        lines += [f"not sent ({n}×), known bug: {why}" for why, n in self.known.items()]
        lines += [str(f) for f in self.findings]
        return "\n".join(lines)


class Budget(Exception):
    """Raised inside a Hypothesis run to end it: the request count or deadline is reached."""


# -- values that exist -----------------------------------------------------------------------


def _selection(node_type: str | None, depth: int) -> st.SearchStrategy[str]:
    """A `fields` value of real names for `node_type`, with brace and dot nesting."""
    if node_type is None:
        return st.sampled_from(["Image", "MapFeature", "Detection", "Organization",
                                "User"]).flatmap(lambda t: _selection(t, depth))
    spec = NODE_TYPES[node_type]
    names = sorted(spec.scalars)
    item: st.SearchStrategy[str] = st.sampled_from(names)
    if spec.refs:
        ref = st.sampled_from(sorted(spec.refs))
        item = st.one_of(item, ref)
        if depth > 0:
            def nested(name: str) -> st.SearchStrategy[str]:
                inner = _selection(spec.refs[name].target, depth - 1)
                return st.one_of(inner.map(lambda s: f"{name}{{{s}}}"),
                                 st.sampled_from(sorted(NODE_TYPES[spec.refs[name].target]
                                                        .scalars)).map(lambda s: f"{name}.{s}"))
            item = st.one_of(item, ref.flatmap(nested))
    return st.lists(item, min_size=1, max_size=5).map(",".join)


def _cursor() -> st.SearchStrategy[str]:
    ints = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(), st.just(10**30))
    return st.lists(ints, min_size=1, max_size=3).map(
        lambda vs: base64.urlsafe_b64encode(":".join(map(str, vs)).encode()).decode()
        .rstrip("="))


def _hostile_fields() -> st.SearchStrategy[str]:
    """Selections that are expensive or odd on purpose (issue #14 items 1 and 2)."""
    depth = st.integers(1, 40)
    return st.one_of(
        depth.map(lambda n: "detections{image{" * n + "id" + "}}" * n),
        depth.map(lambda n: "images{detections{image{" * n + "id" + "}}}" * n),
        st.integers(1, 3000).map(lambda n: "{" * n),
        st.integers(1, 3000).map(lambda n: "." * n),
        st.integers(1, 500).map(lambda n: ",".join(["id"] * n)),
        st.integers(1, 12).map(lambda n: ".".join(["detections", "image"] * n) + ".id"),
    )


#: Values that broke parsers elsewhere: digits `int()` refuses or misreads, numbers past 64
#: bits, non-finite numbers, impossible dates, control characters, separators, long runs.
NASTY_STRINGS = [
    "²", "١١", "１２", "𝟙", "¹⁴", "-1", "0", "-0", "00", "+1", " 1", "1_000", "0x10", "1e309",
    "-1e309", "NaN", "inf", "-inf", "9" * 20, "9" * 400, str(2**63), str(2**64), str(-(2**63) - 1),
    "", " ", "\x00", "%00", "\r\n", "\t", "{", "}", "{}", ",", ",,", ".", "..", "/", "\\", "'", '"',
    "null", "true", "[]", "🚀", "ǅ", "İ", "0000-00-00", "2021-02-30", "2021-01-01T25:00:00Z",
    "9999-12-31T23:59:59.999999+23:59", "0001-01-01T00:00:00-23:59", "-180,-90,180,90",
    "0,0,0,0", "nan,nan,nan,nan", "1e400,0,0,0", "a" * 5000, "," * 3000, "{" * 2000,
]
#: The ones an HTTP client can put in a header (latin-1, no control characters).
NASTY_HEADERS = [v for v in NASTY_STRINGS
                 if v.isprintable() and v == v.strip() and v.encode("utf-8").isascii()]
NASTY_JSON: list[Any] = [
    *NASTY_STRINGS[:30], 10**30, -(10**30), 2**63, 1e308, -0.0, True, None, [], {}, [[[[[]]]]],
]


def _known_strategies(target: FuzzTarget) -> dict[str, Callable[[str], st.SearchStrategy[Any]]]:
    """Parameter name → (operation id → strategy of a value that exists)."""
    k = target.known

    def ids_for(op: str) -> st.SearchStrategy[str]:
        if op in ("getImageTiles", "getImageAsset", "getImageMesh"):
            return st.sampled_from(k.image_ids)
        if op == "getDetectionsOf":
            return st.sampled_from([*k.image_ids[:30], *k.feature_ids])
        return st.sampled_from(k.node_ids)

    variants = st.one_of(st.sampled_from(list(IMAGE_VARIANTS)),
                         st.builds(lambda z, x, y: f"tile_{z}_{x}_{y}", st.integers(0, 14),
                                   st.integers(0, 20), st.integers(0, 20)))
    return {
        "id": ids_for,
        "ids": lambda op: st.lists(st.sampled_from(k.node_ids), min_size=1, max_size=6),
        "fields": lambda op: st.one_of(_selection(FIELDS_OF.get(op), 3), _selection(
            FIELDS_OF.get(op), 2), _selection(FIELDS_OF.get(op), 1), _hostile_fields()),
        "bbox": lambda op: st.sampled_from(k.bboxes),
        "sequence_id": lambda op: (st.sampled_from(k.sequence_ids) if op in (
            "getSequenceImages", "getSequenceCluster") else st.lists(
                st.sampled_from(k.sequence_ids), min_size=1, max_size=3)),
        "sequence_ids": lambda op: st.lists(st.sampled_from(k.sequence_ids), min_size=1,
                                            max_size=3),
        "creator_username": lambda op: st.sampled_from(k.usernames),
        "organization_id": lambda op: st.sampled_from(k.organization_ids),
        "image_ids": lambda op: st.lists(st.sampled_from(k.image_ids), min_size=1,
                                         max_size=30),
        "after": lambda op: _cursor(),
        "z": lambda op: st.integers(0, 15) if op == "getImageTiles" else st.integers(0, 14),
        "variant": lambda op: variants,
        "Accept-Encoding": lambda op: st.sampled_from(
            ["gzip", "gzip;q=0", "*", "br, gzip;q=0.5", "identity", "gzip;q=1e999", "x;q=nan"]),
        "If-None-Match": lambda op: st.sampled_from(['"empty"', "*", '"0"', 'W/"x", "empty"']),
        "Offset": lambda op: st.one_of(st.integers(0, 2000).map(str), st.just("")),
        "object_values": lambda op: st.lists(st.sampled_from(
            ["*", "regulatory--*", "*--g1", "object--*", "information--*"]), min_size=1,
            max_size=3),
    }


# -- one request -----------------------------------------------------------------------------


class Fuzzer:
    """Runs the operations of one document against one live target."""

    def __init__(self, target: FuzzTarget, document: dict[str, Any], report: Report) -> None:
        self.target = target
        self.document = document
        self.report = report
        self.validator = DocValidator(document)
        self.schema = schemathesis.openapi.from_dict(document)
        self.session = requests.Session()
        self.session.trust_env = False
        self.routes = _routes(target.upload_prefix)
        self.upload_route = re.compile(re.escape(target.upload_prefix) + r"/[^/]+")
        self.known = _known_strategies(target)
        self.max_requests = 0
        self.deadline = 0.0
        self._route_of_template: dict[str, Route | None] = {}

    def operations(self) -> list[Any]:
        """The document's operations."""
        found = []
        for result in self.schema.get_all_operations():
            found.append(result.ok())
        return found

    def _route(self, path: str) -> Route | None:
        for route in self.routes:
            if route.pattern.fullmatch(path):
                return route
        return None

    def _expected_route(self, template: str, op: Any) -> Route | None:
        if template not in self._route_of_template:
            path = template
            for param in op.definition.raw.get("parameters", []):
                if param.get("in") == "path":
                    value = param["example"]
                    text = ",".join(value) if isinstance(value, list) else str(value)
                    path = path.replace("{" + param["name"] + "}", text)
            self._route_of_template[template] = self._route(path)
        return self._route_of_template[template]

    def _patch(self, case: Any, op: Any, op_id: str, data: st.DataObject) -> bool:
        """Swap some generated values for ones that exist, or add them where the generator
        left an optional parameter out (each parameter with its own coin), and a few for
        hostile ones; returns whether a hostile value went in (the case may then break the
        document's rules, so it is no longer a positive one)."""
        hostile = False
        for param in op.definition.raw.get("parameters", []):
            where = {"path": "path_parameters", "query": "query", "header": "headers"}.get(
                param.get("in"))
            make = self.known.get(param["name"])
            if where is None or make is None:
                continue
            if data.draw(st.booleans(), label=f"known {param['name']}"):
                values = getattr(case, where)
                if values is None:
                    values = {}
                    setattr(case, where, values)
                values[param["name"]] = data.draw(make(op_id), label=param["name"])
        for param in op.definition.raw.get("parameters", []):
            where = {"path": "path_parameters", "query": "query", "header": "headers"}.get(
                param.get("in"))
            if where is not None and data.draw(st.integers(0, 7), label="nasty?") == 0:
                values = getattr(case, where)
                if values is None:
                    values = {}
                    setattr(case, where, values)
                pool = NASTY_HEADERS if where == "headers" else NASTY_STRINGS
                values[param["name"]] = data.draw(st.sampled_from(pool), label="nasty")
                hostile = True
        if isinstance(case.body, dict) and data.draw(st.integers(0, 3)) == 0:
            keys = sorted({*case.body, *self._body_properties(op)}, key=str)
            if keys:
                key = data.draw(st.sampled_from(keys), label="nasty key")
                case.body[key] = data.draw(st.sampled_from(NASTY_JSON), label="nasty json")
                hostile = True
        if op_id == "getVectorTile" and data.draw(st.booleans(), label="known tile"):
            z, x, y = data.draw(st.sampled_from(self.target.known.tiles), label="tile")
            case.path_parameters.update({"version": "2", "z": z, "x": x, "y": y})
        if op_id == "finishUpload" and isinstance(case.body, dict) and data.draw(
                st.booleans(), label="known handle"):
            case.body["file_handle"] = data.draw(st.sampled_from(self.target.known.handles))
        return hostile

    def _body_properties(self, op: Any) -> list[str]:
        """The property names of an operation's JSON body schema (one `$ref` followed)."""
        body = op.definition.raw.get("requestBody", {}).get("content", {})
        schema = body.get("application/json", {}).get("schema", {})
        if "$ref" in schema:
            schema = self.document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return sorted(schema.get("properties", {}))

    def _auth(self, case: Any, op_id: str, data: st.DataObject) -> str:
        """Choose how the request authenticates; returns the choice's name."""
        choice = data.draw(st.sampled_from(
            ["client", "client", "client", "user", "user", "generated", "none", "query"]),
            label="auth")
        if op_id in USER_OPERATIONS and choice == "client":
            choice = data.draw(st.sampled_from(["user", "client"]), label="user op")
        headers = case.headers if case.headers is not None else {}
        query = case.query if case.query is not None else {}
        if choice != "generated":
            headers.pop("Authorization", None)
            query.pop("access_token", None)
        token = self.target.user_token if choice == "user" else self.target.client_token
        if choice in ("client", "user"):
            headers["Authorization"] = f"OAuth {token}"
        elif choice == "query":
            query["access_token"] = token
        case.headers, case.query = headers, query
        return choice

    def send(self, case: Any, op: Any, op_id: str, mode: str) -> None:
        """Send one case and check the answer."""
        report = self.report
        if report.requests >= self.max_requests or time.monotonic() >= self.deadline:
            raise Budget()
        for bug in KNOWN_BUGS:
            if bug.operation == op_id and bug.matches(case):
                report.known[bug.description] += 1
                return
        kwargs = case.as_transport_kwargs(base_url=self.target.base_url)
        kwargs.setdefault("timeout", REQUEST_TIMEOUT_S)
        kwargs.pop("verify", None)
        report.requests += 1
        report.by_operation[op_id] += 1
        if report.requests % RSS_EVERY == 0:
            report.sample_memory(self.target)
        try:
            answer = self.session.request(**kwargs)
        except requests.RequestException as exc:
            report.by_class["no answer"] += 1
            report.add(Finding("no answer", op_id, mode, _describe(kwargs), 0,
                               f"{type(exc).__name__}: {exc}"[:300]))
            self.session = requests.Session()
            self.session.trust_env = False
            return
        status = answer.status_code
        report.by_class[f"{status // 100}xx"] += 1
        body = answer.content
        content_type = answer.headers.get("content-type", "")
        found: list[tuple[str, str]] = []
        if status >= 500:
            found.append(("server error", body[:300].decode("utf-8", "replace")))
        if traceback_in(body, content_type):
            found.append(("traceback", body[:500].decode("utf-8", "replace")))
        path = normalise_path(unquote(urlsplit(answer.request.url or "").path))
        routed = self._route(path)
        if status >= 400:
            upload = self.upload_route.fullmatch(path) is not None
            found += [("envelope", problem) for problem in envelope_problems(body, upload=upload)]
        expected = self._expected_route(op.path, op)
        if mode == "positive" and routed is not None and routed is expected:
            report.validated[f"{status // 100}xx"] += 1
            found += [("document", problem) for problem in self.validator.problems(
                op.method, op.path, status, content_type, body)]
        if found:
            where = _describe(kwargs)  # only now: preparing the request again costs CPU
            for kind, detail in found:
                report.add(Finding(kind, op_id, mode, where, status, detail))

    # -- runs ----------------------------------------------------------------------------------

    def run_operation(self, op: Any, mode: GenerationMode, examples: int, run_seed: int) -> None:
        """Up to `examples` requests for one operation in one mode."""
        op_id = op.definition.raw.get("operationId", f"{op.method} {op.path}")
        try:
            strategy = op.as_strategy(generation_mode=mode)
        except Exception as exc:  # an operation schemathesis cannot negate, say
            self.report.skipped.setdefault(f"{op_id} ({mode.value})", repr(exc)[:200])
            return

        @seed(run_seed)
        @settings(max_examples=examples, phases=[Phase.generate], database=None,
                  deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=False, report_multiple_bugs=False)
        @given(case=strategy, data=st.data())
        def run(case: Any, data: st.DataObject) -> None:
            hostile = self._patch(case, op, op_id, data)
            self._auth(case, op_id, data)
            self.send(case, op, op_id, f"{mode.value} + hostile" if hostile else mode.value)

        try:
            run()
        except Budget:
            raise
        except HypothesisException:
            pass  # e.g. Unsatisfiable: nothing left to generate for this operation and mode

    def run(self, *, max_requests: int, max_seconds: float, examples_per_round: int,
            base_seed: int, progress: Callable[[Report], None] | None = None,
            first_operation: int = 0) -> Report:
        """Rounds over every operation and both modes until the budget is spent (starting at
        operation `first_operation`, so that runs side by side start apart)."""
        started = time.monotonic()
        self.max_requests = max_requests
        self.deadline = started + max_seconds
        self.report.sample_memory(self.target)
        ops = self.operations()
        start = first_operation % len(ops)
        ops = ops[start:] + ops[:start]
        try:
            for round_no in _rounds():
                before = self.report.requests
                for index, op in enumerate(ops):
                    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                        run_seed = base_seed + 1_000_003 * round_no + 7 * index \
                            + (1 if mode is GenerationMode.NEGATIVE else 0)
                        self.run_operation(op, mode, examples_per_round, run_seed)
                if progress is not None:
                    self.report.elapsed_s = time.monotonic() - started
                    progress(self.report)
                if self.report.requests == before:
                    break  # every operation is exhausted
        except Budget:
            pass
        self.report.elapsed_s = time.monotonic() - started
        self.report.sample_memory(self.target)
        return self.report


def _rounds() -> Iterator[int]:
    n = 0
    while True:
        yield n
        n += 1


def _describe(kwargs: dict[str, Any]) -> str:
    """A short, reproducible description of a request (method, URL with query, headers)."""
    request = requests.Request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                               headers=kwargs.get("headers"), data=kwargs.get("data"),
                               json=kwargs.get("json")).prepare()
    headers = {k: v for k, v in (request.headers or {}).items()
               if k.lower() not in ("user-agent", "accept", "accept-encoding", "connection",
                                    "content-length", "x-schemathesis-testcaseid")}
    body = request.body
    shown = "" if not body else f" body={body[:200]!r}"
    return f"{request.method} {request.url} headers={headers}{shown}"[:1500]


def scan_log(text: str) -> int:
    """Tracebacks in a server log."""
    return text.count("Traceback (most recent call last)")


def merge(reports: list[Report]) -> Report:
    """One report of several runs against the same server (run side by side)."""
    total = Report()
    for r in reports:
        total.requests += r.requests
        for mine, theirs in ((total.by_class, r.by_class), (total.by_operation, r.by_operation),
                             (total.problems, r.problems), (total.validated, r.validated),
                             (total.known, r.known), (total.kept, r.kept)):
            mine.update(theirs)
        total.findings += r.findings
        total.skipped.update(r.skipped)
        total.rss_start_kib = min(total.rss_start_kib or r.rss_start_kib, r.rss_start_kib)
        total.rss_peak_kib = max(total.rss_peak_kib, r.rss_peak_kib)
        total.hwm_peak_kib = max(total.hwm_peak_kib, r.hwm_peak_kib)
        total.elapsed_s = max(total.elapsed_s, r.elapsed_s)
    return total


def fuzz(target: FuzzTarget, *, max_requests: int, max_seconds: float,
         examples_per_round: int = 25, base_seed: int = 20261206,
         progress: Callable[[Report], None] | None = None) -> Report:
    """Fuzz `target` from its own `/openapi.json`; the report of the run."""
    with requests.Session() as session:
        session.trust_env = False
        document = session.get(f"{target.base_url}/openapi.json", timeout=30).json()
    report = Report()
    Fuzzer(target, document, report).run(
        max_requests=max_requests, max_seconds=max_seconds,
        examples_per_round=examples_per_round, base_seed=base_seed, progress=progress)
    report.log_tracebacks = scan_log(target.server.log_path.read_text(errors="replace"))
    return report
