"""S3 that misbehaves, against real moto_server processes and the real clients (boto3, polars, deltalake).

* Transient faults (503 SlowDown, 500 InternalError, a connection reset without an answer), injected
  by a proxy in front of moto, are retried by each client with backoff: the nightly run succeeds and
  publishes every row once. A store that keeps failing ends in one clear line after bounded attempts.
* A Delta commit whose answer is lost after the store made it is recognised, not made twice.
* Wrong credentials (a second moto_server that checks signatures) and a missing bucket are one clear
  line and exit 1, for boto3's listings and for the feature table deltalake reads alike.
* Bad raw partitions on S3 fail alone, with the same messages as on a local folder.
"""
from __future__ import annotations

import collections
import contextlib
import datetime as dt
import http.client
import re
import socket
import struct
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import boto3
import polars as pl
import pytest

from flows.cli import main
from tasks.registry.client import Registry
from tasks.settings import load_settings
from tasks.store.objects import open_storage
from tasks.store.table import FeatureTable

from tests.helpers import (START, TRACEBACK, day, failure_lines, make_dataset, moto_server, put_features_on_s3, put_on_s3,
                           slices)
from tests.helpers import BAD_FILES, made_model

ROWS = 1000
SECRET = "wrong-secret-9f3c1a7e"  # must never be printed

# Hop-by-hop headers describe one connection: the proxy neither forwards nor copies them.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
_S3_ERRORS = {"503": (503, "SlowDown", "Please reduce your request rate."),
              "500": (500, "InternalError", "We encountered an internal error. Please try again.")}


class FaultProxy(ThreadingHTTPServer):
    """An HTTP proxy to an S3 endpoint that fails the first ``faults_per_request`` attempts of every
    distinct request (method, path with query, Range header), so that a client's retries get through.

    Each client, told apart by its User-Agent, gets the fault ``kinds`` in turn: "503" (SlowDown) and
    "500" (InternalError) with S3's XML error body, or "drop" (the connection reset without an answer).
    Those requests never reach the store, as when S3 throttles or a connection dies on the way, so
    retrying them is always safe. ``lose_answer_to`` (a regex on the path) is the harder case: the first
    matching request is carried out by the store, and then its answer is lost.

    It serves from threads of the test process, so a client call that waits on the network while
    holding the GIL would stall it (deltalake 1.6's ``DeltaTable.history()`` does): results are read
    back from moto directly.
    """

    daemon_threads = True
    KINDS = ("503", "500", "drop")

    def __init__(self, upstream: str, kinds: tuple[str, ...] = KINDS, faults_per_request: int = 1,
                 lose_answer_to: str | None = None):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = urlparse(upstream)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.kinds, self.faults_per_request = kinds, faults_per_request
        self.lose_answer_to = re.compile(lose_answer_to) if lose_answer_to else None
        self.faults: collections.Counter[tuple[str, str]] = collections.Counter()  # (client, kind) -> count
        self.errors: list[str] = []  # the proxy's own failures: a client would only see a dropped connection
        self._attempts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._faulted: collections.Counter[str] = collections.Counter()  # client -> faults so far
        self._lock = threading.Lock()

    def fault_for(self, method: str, path: str, byte_range: str, user_agent: str) -> str | None:
        client = user_agent.split("/", 1)[0]  # "Boto3", "polars" (its reader), "object_store" (deltalake)
        with self._lock:
            if self.lose_answer_to and self.lose_answer_to.search(path):
                self.lose_answer_to = None
                self.faults[client, "lost answer"] += 1
                return "lost answer"
            self._attempts[method, path, byte_range] += 1
            if self._attempts[method, path, byte_range] > self.faults_per_request:
                return None
            kind = self.kinds[self._faulted[client] % len(self.kinds)]
            self._faulted[client] += 1
            self.faults[client, kind] += 1
            return kind

    def handle_error(self, request, client_address) -> None:
        self.errors.append(repr(sys.exc_info()[1]))

    def __enter__(self) -> "FaultProxy":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients use it: a pooled connection can die
    server: FaultProxy

    def log_message(self, *args) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers
            pass
        return body

    def _reset(self) -> None:
        """Close with a TCP reset and no answer: the client sees the connection die mid-request."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # now, so that no orderly shutdown (FIN) goes out first
        self.close_connection = True

    def _relay(self) -> None:
        body = self._read_body()
        fault = self.server.fault_for(self.command, self.path, self.headers.get("Range", ""),
                                      self.headers.get("User-Agent", "?"))
        if fault == "drop":
            return self._reset()
        if fault in _S3_ERRORS:
            status, code, message = _S3_ERRORS[fault]
            return self._answer(status, [("Content-Type", "application/xml")],
                                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                                f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>".encode())
        status, headers, data = self._forward(body)
        if fault == "lost answer":
            return self._reset()
        self._answer(status, headers, data)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=60)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():  # Host included: the signature covers it
                if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                    upstream.putheader(name, value)
            if body or self.command in ("PUT", "POST"):
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body or None)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | {"date", "server"}]
        return response.status, headers, data

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() != "content-length" or self.command == "HEAD":  # HEAD: the object's length
                self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay


@pytest.fixture
def proxy_env(s3, moto_endpoint, monkeypatch) -> Iterator[Callable[..., FaultProxy]]:
    """Start a FaultProxy in front of the session's moto_server and point AWS_ENDPOINT_URL at it."""
    proxies: list[FaultProxy] = []
    with contextlib.ExitStack() as running:
        def start(**kw) -> FaultProxy:
            proxies.append(running.enter_context(FaultProxy(moto_endpoint, **kw)))
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxies[-1].url)
            return proxies[-1]

        yield start
    assert not [e for p in proxies for e in p.errors], "the proxy itself failed"


def test_nightly_retries_transient_faults_in_every_client(tmp_path, s3, moto_endpoint, proxy_env, monkeypatch,
                                                          capsys):
    """Each client must retry on its own: a Prefect task retry would redo the whole step, and for the
    ingest step it would not happen at all."""
    config = make_dataset(tmp_path, days=2, rows=ROWS)
    put_on_s3(tmp_path, s3, config)
    proxy = proxy_env()

    for i in range(2):
        assert main(["run", "--config", str(config), "--date", day(i)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "Task run 'publish" in err  # Prefect's task logs are captured here, so the next check means something
    assert "will start" not in err, "a Prefect task retry ran: a client did not retry on its own"
    for client in ("Boto3", "polars", "object_store"):  # listing/small objects, raw reads, Delta reads and writes
        for kind in FaultProxy.KINDS:
            assert proxy.faults[client, kind] > 0, f"no {kind} fault reached {client}: {dict(proxy.faults)}"

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # read back from moto itself
    s = load_settings(config)
    df = pl.read_delta(s.table_uri, storage_options=open_storage(s.features.uri).storage_options())
    assert df.height == 2 * ROWS and df["id"].n_unique() == df.height
    assert sorted(df["dt"].cast(pl.Utf8).unique().to_list()) == [day(0), day(1)]


def test_a_store_that_keeps_throttling_is_one_clear_line(tmp_path, s3, proxy_env, capsys):
    """The store's check before any work has a budget of its own (three attempts, whatever
    AWS_MAX_ATTEMPTS allows the run's clients) and the give-up says why."""
    config = make_dataset(tmp_path, days=1, rows=200)
    put_on_s3(tmp_path, s3, config, features=False)
    proxy = proxy_env(kinds=("503",), faults_per_request=100)

    assert main(["validate", "--config", str(config), "--date", day(0)]) == 1
    err = capsys.readouterr().err
    [line] = failure_lines(err)
    assert line.startswith("FAILED: checking s3://lake/raw/sample: ") and "SlowDown (HTTP 503)" in line
    assert "after 3 attempt(s)" in line, line
    assert proxy.faults == {("Boto3", "503"): 3}
    assert not TRACEBACK.search(err)


def test_a_commit_whose_answer_is_lost_is_not_made_twice(tmp_path, s3, proxy_env):
    """The store carried out the commit but the writer never heard back. Retrying that PUT blindly
    would meet the commit it already made; deltalake instead reads the log and finds its own commit."""
    config = make_dataset(tmp_path, days=1, rows=10)
    put_on_s3(tmp_path, s3, config)
    s = load_settings(config)
    rows = pl.DataFrame({"id": range(ROWS), "dt": [START] * ROWS}).with_columns(
        model_version=pl.lit(1, pl.Int32), latent_0=pl.lit(64, pl.Int8), anomaly_score=pl.lit(0.1, pl.Float32),
        is_anomaly=pl.lit(False))
    first = FeatureTable(s).replace_slice([rows], 1, START, {}, made_model(), 1)  # the next commit replaces the slice
    proxy = proxy_env(faults_per_request=0, lose_answer_to=r"/_delta_log/\d+\.json$")

    assert FeatureTable(s).replace_slice([rows], 1, START, {}, made_model(), 1).table_version == first.table_version + 1
    assert proxy.faults == {("object_store", "lost answer"): 1}
    assert slices(s)["rows"].to_list() == [ROWS]


@dataclass(frozen=True)
class LockedStore:
    """A moto_server that checks signatures, with a bucket for one raw partition and the feature table."""

    url: str
    config_text: str
    key_id: str  # an IAM user's key that may read the bucket


@pytest.fixture(scope="module")
def locked_s3(tmp_path_factory) -> Iterator[LockedStore]:
    """Bucket, data and IAM user are made before authentication is switched on (moto's
    /moto-api/reset-auth), so between a refused call and an accepted one only the credentials differ."""
    with moto_server(tmp_path_factory.mktemp("locked-moto")) as url:
        admin = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="admin",
                     aws_secret_access_key="admin")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="s3", PolicyDocument='{"Version": "2012-10-17", '
                            '"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}')
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        s3 = boto3.client("s3", **admin)
        s3.create_bucket(Bucket="locked")
        root = tmp_path_factory.mktemp("locked")
        config = make_dataset(root, days=1, rows=200)
        put_on_s3(root, s3, config, bucket="locked")
        urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset-auth", data=b"0",  # checked from now
                                                      headers={"Content-Type": "text/plain"}))
        reader = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                              aws_secret_access_key=key["SecretAccessKey"])
        assert reader.list_objects_v2(Bucket="locked")["KeyCount"] == 1  # the right credentials are accepted
        yield LockedStore(url, config.read_text(), key["AccessKeyId"])


@pytest.mark.parametrize("wrong, hint", [("access key", "the access key is wrong"),
                                         ("secret key", "the secret key is wrong")])
def test_wrong_credentials_are_one_clear_line(tmp_path, locked_s3, monkeypatch, capsys, wrong, hint):
    config = tmp_path / "latentfeed.toml"
    config.write_text(locked_s3.config_text)
    key_id = "AKIAUNKNOWNKEY000000" if wrong == "access key" else locked_s3.key_id
    for k, v in {"AWS_ENDPOINT_URL": locked_s3.url, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": SECRET,
                 "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)

    raw = "checking s3://locked/raw/sample"  # before any work
    for args, where in ((["validate", "--date", day(0)], raw), (["run", "--date", day(0)], raw),
                        (["features"], "checking s3://locked/features")):  # the feature table, through deltalake
        assert main([*args, "--config", str(config)]) == 1, args
        out, err = capsys.readouterr()
        assert failure_lines(err) == [f"FAILED: {where}: {hint}"], err
        assert SECRET not in out + err and not TRACEBACK.search(out + err), args


def test_a_missing_feature_bucket_is_one_clear_line(tmp_path, s3, capsys):
    """deltalake alone would answer with a multi-line object-store error, here raised out of the CLI."""
    config = make_dataset(tmp_path, days=1, rows=10)
    config.write_text(config.read_text().replace('uri = "features"', 'uri = "s3://no-such-bucket/features"'))
    assert main(["features", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert failure_lines(err) == ["FAILED: checking s3://no-such-bucket/features: the bucket does not exist"], err
    assert not TRACEBACK.search(out + err)


def test_bad_partitions_on_s3_fail_alone(with_champion, tmp_path, s3, capsys):
    """The bad-input corpus of test_bad_input, on S3: each day fails `validate` and `run` with its
    message (exit 1) and publishes nothing, the day published before them stays as it was, and a
    retraining on the next good day skips every bad day of its window and publishes."""
    corruptions = {"missing column": (lambda p: pl.read_parquet(p).drop("x_03").write_parquet(p),
                                      ["'x_03'", "column is present", "nothing was published",
                                       "report kept at s3://lake/features/_quarantine/"]), **BAD_FILES}
    config = with_champion(days=2 + len(corruptions), rows=500)  # day 0 published by the champion trained on it
    config.write_text(config.read_text() + "\n[schedule]\ncatch_up_days = 0\n")  # each bad day on its own first
    good = day(1 + len(corruptions))
    bad_days = {}
    for i, (case, (corrupt, expected)) in enumerate(corruptions.items(), start=1):
        corrupt(str(tmp_path / "raw" / f"dt={day(i)}" / "part-0.parquet"))
        bad_days[case] = (day(i), expected)
    put_on_s3(tmp_path, s3, config, features=False)
    put_features_on_s3(tmp_path, s3, config)
    assert main(["run", "--config", str(config), "--date", day(0)]) == 0  # on S3 now: found published
    s = load_settings(config)
    before = slices(s)
    assert before["dt"].to_list() == [dt.date.fromisoformat(day(0))]

    for case, (date, expected) in bad_days.items():
        capsys.readouterr()
        assert main(["validate", "--config", str(config), "--date", date]) == 1, case
        out, err = capsys.readouterr()
        assert all(x in out + err for x in expected if "published" not in x and "kept" not in x), (case, out, err)
        assert main(["run", "--config", str(config), "--date", date]) == 1, case
        err = capsys.readouterr().err
        assert all(x in err for x in expected) and not TRACEBACK.search(err), (case, err)
        assert len(failure_lines(err)) == 1, (case, err)

    for case, raw_uri, expected in [
            ("missing day", "s3://lake/raw/sample", "no *.parquet files in raw partition s3://lake/raw/sample/dt="),
            ("missing prefix", "s3://lake/raw/nope", "s3://lake/raw/nope holds no dt=YYYY-MM-DD partition folders"),
            ("missing bucket", "s3://no-such-bucket/raw", "the bucket does not exist")]:
        variant = tmp_path / "variant.toml"
        variant.write_text(config.read_text().replace("s3://lake/raw/sample", raw_uri))
        date = "2030-01-01" if case == "missing day" else day(0)
        assert main(["run", "--config", str(variant), "--date", date]) == 1, case
        err = capsys.readouterr().err
        assert len(failure_lines(err)) == 1 and expected in failure_lines(err)[0], (case, err)

    assert slices(s).equals(before)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="features/")["Contents"]]
    assert not [k for k in keys if any(f"dt={d}" in k for d, _ in bad_days.values()) and "/_quarantine/" not in k]
    assert any(k.endswith(f"_quarantine/sample_latent/dt={bad_days['missing column'][0]}/report.json") for k in keys)

    config.write_text(config.read_text().replace("window_days = 30", 'window_days = 30\nrefresh = "always"')
                      .replace("catch_up_days = 0", f"catch_up_days = {len(bad_days)}"))
    assert main(["run", "--config", str(config), "--date", good]) == 1  # the bad days it tried to catch up fail
    err = capsys.readouterr().err
    assert all(f"skipping {d} for training" in err for d, _ in bad_days.values()), err
    assert f"FAILED: {len(bad_days)} of {len(bad_days)} missed day(s) failed (the others and {good} were" in err
    assert Registry(s).champion().version == 2
    assert sorted(set(slices(s)["dt"].cast(pl.Utf8).to_list())) == [day(0), good]
