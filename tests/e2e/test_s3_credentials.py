"""S3 credentials that the AWS chain renews during a run, against a moto_server that checks signatures.

The chain is a profile whose ``credential_process`` prints the keys of a file, with an expiry inside
botocore's advisory window (15 minutes), so botocore asks the process again at each use, as it does for a
role's credentials near their end. Mid-run the test issues new keys and deletes the old ones, which moto
then refuses as S3 refuses expired ones: the run goes on only if its boto3 clients, polars reads and
deltalake handles all take the keys the chain renewed.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from flows.cli import main
from tasks.errors import StorageError
from tasks.features import read_features
from tasks.settings import load_settings
from tasks.store.objects import open_storage
from tasks.store.table import FeatureTable

from tests.helpers import (TRACEBACK, day, failure_lines, make_dataset, moto_server, put_features_on_s3, put_on_s3,
                           set_config, slices)

BUCKET = "rotating"
ALLOW_ALL = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


@dataclass(frozen=True)
class LockedServer:
    url: str
    keeper: dict[str, str]  # client arguments of an IAM user the test acts as: it issues and revokes keys


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory) -> Iterator[LockedServer]:
    """A moto_server with a bucket and a keeper user, made before it checks signatures (moto's
    /moto-api/reset-auth); from then on only keys of its IAM users are accepted."""
    with moto_server(tmp_path_factory.mktemp("rotating-moto")) as url:
        admin = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="admin",
                     aws_secret_access_key="admin")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="keeper")
        iam.put_user_policy(UserName="keeper", PolicyName="all", PolicyDocument=ALLOW_ALL)
        key = iam.create_access_key(UserName="keeper")["AccessKey"]
        boto3.client("s3", **admin).create_bucket(Bucket=BUCKET)
        urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset-auth", data=b"0",
                                                      headers={"Content-Type": "text/plain"}))
        keeper = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                      aws_secret_access_key=key["SecretAccessKey"])
        yield LockedServer(url, keeper)


_users = itertools.count()


class Chain:
    """The AWS chain of this process: a profile whose ``credential_process`` prints ``credentials.json``,
    the keys of an IAM user of its own."""

    def __init__(self, server: LockedServer, folder: Path):
        self.iam = boto3.client("iam", **server.keeper)
        self.s3 = boto3.client("s3", **server.keeper)  # the keeper's: puts test data in place
        self.user = f"runner-{next(_users)}"
        self.iam.create_user(UserName=self.user)
        self.iam.put_user_policy(UserName=self.user, PolicyName="all", PolicyDocument=ALLOW_ALL)
        self.file = folder / "credentials.json"
        self.config = folder / "config"
        self.config.write_text(f"[profile rotating]\ncredential_process = cat {self.file}\n")
        self.key = self.issue(dt.timedelta(minutes=14))  # within botocore's advisory window: asked again at each use
        self.rotations = 0

    def issue(self, expires_in: dt.timedelta) -> str:
        """New keys for the chain to hand out (the old ones stay valid); returns their id."""
        key = self.iam.create_access_key(UserName=self.user)["AccessKey"]
        expiry = dt.datetime.now(dt.timezone.utc) + expires_in
        self.file.write_text(json.dumps({"Version": 1, "AccessKeyId": key["AccessKeyId"],
                                         "SecretAccessKey": key["SecretAccessKey"],
                                         "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}))
        return key["AccessKeyId"]

    def rotate(self) -> None:
        """The chain's next keys (valid for an hour), then the old ones refused: they have expired."""
        old, self.key = self.key, self.issue(dt.timedelta(hours=1))
        self.iam.delete_access_key(UserName=self.user, AccessKeyId=old)
        self.rotations += 1


@pytest.fixture
def chain(locked_server, tmp_path, monkeypatch) -> Chain:
    """This process's AWS environment: the locked server, and credentials from the chain's profile only."""
    made = Chain(locked_server, tmp_path)
    (tmp_path / "no-credentials").write_text("")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    for k, v in {"AWS_ENDPOINT_URL": locked_server.url, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_CONFIG_FILE": str(made.config), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
                 "AWS_PROFILE": "rotating"}.items():
        monkeypatch.setenv(k, v)
    return made


@pytest.mark.timeout(120)
def test_the_store_hands_out_the_credentials_the_chain_renewed(chain, tmp_path):
    store = open_storage(f"s3://{BUCKET}/{tmp_path.name}")
    uri = store.join("table")
    first = store.storage_options()
    assert first["aws_access_key_id"] == chain.key
    write_deltalake(uri, pa.table({"a": [1]}), storage_options=first)
    handle = DeltaTable(uri, storage_options=first)

    chain.rotate()
    assert store.list_dirs(store.uri) == ["table"]  # boto3's client renewed its own
    now = store.storage_options()
    assert now["aws_access_key_id"] == chain.key != first["aws_access_key_id"]
    write_deltalake(uri, pa.table({"a": [2]}), mode="append", storage_options=now)
    assert pl.read_delta(uri, storage_options=now)["a"].sort().to_list() == [1, 2]
    with pytest.raises(OSError):  # what a handle kept from before does: why its holder opens it again
        handle.update_incremental()


@pytest.mark.timeout(120)
def test_the_table_handle_is_opened_again_when_the_credentials_change(chain, tmp_path):
    """Only then: while they stay the same, the handle and the table state it read are kept."""
    config = make_dataset(tmp_path, days=1, rows=10)
    set_config(config, 'uri = "features"', f'uri = "s3://{BUCKET}/{tmp_path.name}"')
    s = load_settings(config)
    table = FeatureTable(s)
    write_deltalake(s.table_uri, pa.table({"a": [1]}), storage_options=table.options)
    handle = table.open()
    table.refresh()
    assert table.open() is handle

    chain.rotate()
    table.refresh()
    assert table.open() is not handle and table.options["aws_access_key_id"] == chain.key
    assert table.open().version() == 0 and table.open() is table.open()


@pytest.mark.timeout(600)
def test_a_backfill_outlives_the_credentials_it_started_with(with_champion, tmp_path, chain, monkeypatch, capsys):
    """The keys the run started with are revoked once its first day is published: the other days, their
    publish records and the reads after need the ones the chain renewed."""
    config = with_champion(days=4, rows=500)
    config.write_text(config.read_text() + "\n[backfill]\nconcurrency = 1\n")  # each day after the one before
    put_on_s3(tmp_path, chain.s3, config, bucket=BUCKET, features=False)
    put_features_on_s3(tmp_path, chain.s3, config, bucket=BUCKET)

    publish = FeatureTable.replace_slice

    def publish_then_rotate(self, *args, **kwargs):
        published = publish(self, *args, **kwargs)
        if not chain.rotations:
            chain.rotate()
        return published

    monkeypatch.setattr(FeatureTable, "replace_slice", publish_then_rotate)
    assert main(["backfill", "--config", str(config), "--start", day(1), "--end", day(3)]) == 0, capsys.readouterr()
    out, err = capsys.readouterr()
    assert chain.rotations == 1 and not failure_lines(err) and not TRACEBACK.search(out + err)
    s = load_settings(config)
    assert slices(s)["dt"].cast(pl.Utf8).to_list() == [day(i) for i in range(4)]
    assert read_features(config, start=day(1)).collect().height == 3 * 500


@pytest.mark.timeout(120)
def test_a_chain_that_cannot_renew_is_one_clear_line(chain, tmp_path):
    """Keys within botocore's mandatory window (10 minutes) must be renewed before any use."""
    chain.key = chain.issue(dt.timedelta(minutes=5))
    store = open_storage(f"s3://{BUCKET}/{tmp_path.name}")
    assert store.storage_options()["aws_access_key_id"] == chain.key
    chain.file.unlink()  # the credential process fails from now on
    for ask in (store.storage_options, lambda: store.list_files(store.uri)):
        with pytest.raises(StorageError, match="the AWS credential chain could not get credentials") as e:
            ask()
        assert "\n" not in str(e.value) and chain.key not in str(e.value)
