"""BlobStore behaviour on the local folder and on real S3 (SeaweedFS), and media through each."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.s3_server import S3Server, s3_server
from wayview.blobs import LocalBlobs, open_blobs
from wayview.blobs.base import BlobStore
from wayview.blobs.s3 import S3Blobs
from wayview.testing import make_settings

pytestmark = pytest.mark.xdist_group("s3")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


def s3_blobs(server: S3Server, **kw: object) -> S3Blobs:
    prefix = f"t-{uuid.uuid4().hex[:8]}"  # each test its own prefix in the shared bucket
    return S3Blobs(f"s3://{server.bucket}/{prefix}", endpoint_url=server.endpoint_url,
                   access_key_id=server.access_key_id,
                   secret_access_key=server.secret_access_key, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobs(tmp_path / "blobs")
    return s3_blobs(request.getfixturevalue("s3"))


def test_put_get_exists_delete(blobs: BlobStore, tmp_path: Path) -> None:
    key = "images/001/1001/thumb_256.jpg"
    assert not blobs.exists(key)
    with pytest.raises(FileNotFoundError):
        blobs.get_bytes(key)
    blobs.put_bytes(key, b"\xff\xd8first")
    blobs.put_bytes(key, b"\xff\xd8second")  # replaced whole
    assert blobs.exists(key) and blobs.get_bytes(key) == b"\xff\xd8second"
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 40_000)  # 10 MB: multipart on S3
    blobs.put_file("images/001/1001/original.jpg", big)
    assert blobs.get_bytes("images/001/1001/original.jpg") == big.read_bytes()
    assert big.exists()  # the source stays
    blobs.delete(key)
    blobs.delete(key)  # absent: no error
    assert not blobs.exists(key)


def test_delete_folder_removes_one_image_and_nothing_else(blobs: BlobStore) -> None:
    mine = ["images/001/1001/thumb_256.jpg", "images/001/1001/tile_11_0_0.jpg",
            "private/001/1001/source.jpg"]
    others = ["images/001/10011/thumb_256.jpg", "images/001/1002/thumb_256.jpg"]
    for key in mine + others:
        blobs.put_bytes(key, b"\xff\xd8")
    assert blobs.delete_folder("images/001/1001/") == 2
    assert blobs.delete_folder("private/001/1001/") == 1
    assert blobs.delete_folder("images/001/1001/") == 0  # already gone: no error
    assert not any(blobs.exists(k) for k in mine)
    assert all(blobs.exists(k) for k in others)  # a longer id with the same digits survives
    for bad in ("images/001/1001", "../x/", "/abs/", "images/../"):
        with pytest.raises(ValueError):
            blobs.delete_folder(bad)


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs/path", "images/../x", "a//b", "", "a b"])
def test_keys_that_could_escape_are_refused(blobs: BlobStore, key: str) -> None:
    with pytest.raises(ValueError):
        blobs.put_bytes(key, b"x")
    with pytest.raises(ValueError):
        blobs.get_bytes(key)


def test_serving_modes(s3: S3Server) -> None:
    key = "images/002/2002/thumb_1024.jpg"
    proxied = s3_blobs(s3)
    proxied.put_bytes(key, b"jpeg bytes")
    assert proxied.url_for(key) is None and proxied.local_path(key) is None
    signed = S3Blobs(f"s3://{s3.bucket}/{proxied._store.prefix}", endpoint_url=s3.endpoint_url,
                     access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key,
                     serve="presigned", presign_ttl_s=600)
    url = signed.url_for(key)
    assert url is not None and "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url
    assert httpx.get(url).content == b"jpeg bytes"  # a client fetches it straight from S3
    assert httpx.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403
    public = S3Blobs("s3://b/p", endpoint_url=s3.endpoint_url, serve="public",
                     public_base_url="https://cdn.example/imagery/")
    assert public.url_for(key) == f"https://cdn.example/imagery/{key}"
    with pytest.raises(ValueError):
        S3Blobs("s3://b/p", serve="public")
    with pytest.raises(ValueError):
        S3Blobs("http://b/p")


def test_wrong_credentials_fail_loudly(s3: S3Server) -> None:
    bad = S3Blobs(f"s3://{s3.bucket}/x", endpoint_url=s3.endpoint_url,
                  access_key_id=s3.access_key_id, secret_access_key="wrong")
    with pytest.raises(Exception) as info:
        bad.put_bytes("images/001/1/thumb_256.jpg", b"x")
    assert not isinstance(info.value, FileNotFoundError)


def test_settings_select_the_backend(tmp_path: Path, s3: S3Server) -> None:
    assert isinstance(open_blobs(make_settings(tmp_path)), LocalBlobs)
    settings = make_settings(tmp_path, blobs_url=f"s3://{s3.bucket}/cfg", s3={
        "endpoint_url": s3.endpoint_url, "access_key_id": s3.access_key_id,
        "secret_access_key": s3.secret_access_key, "serve": "presigned"})
    store = open_blobs(settings)
    assert isinstance(store, S3Blobs) and store.serve == "presigned"
    store.put_bytes("images/003/3/thumb_256.jpg", b"ok")
    assert store.get_bytes("images/003/3/thumb_256.jpg") == b"ok"


async def test_api_serves_images_from_s3_proxied_or_presigned(s3: S3Server, tmp_path: Path):
    from wayview.blobs.base import image_blob_key
    from wayview.testing import app_client, open_test_store, seed

    settings = make_settings(tmp_path)
    async with open_test_store(settings) as store:
        world = await seed(store)
        im = world.images[0]
        key = image_blob_key(im.id, "thumb_256")
        proxied = s3_blobs(s3)
        proxied.put_bytes(key, b"\xff\xd8thumb")
        async with app_client(settings, store, blobs=proxied) as client:
            r = await client.get(f"/{im.id}?fields=thumb_256_url",
                                 headers={"Authorization": f"OAuth {world.client_token}"})
            url = r.json()["thumb_256_url"]
            assert url == f"{settings.base_url}/media/images/{im.id}/thumb_256.jpg"
            media = await client.get(url)
            assert media.status_code == 200 and media.content == b"\xff\xd8thumb"
            assert media.headers["content-type"] == "image/jpeg"
            missing = await client.get(f"/media/images/{im.id}/thumb_1024.jpg")
            assert missing.status_code == 404
        signed = S3Blobs(f"s3://{s3.bucket}/{proxied._store.prefix}",
                         endpoint_url=s3.endpoint_url, access_key_id=s3.access_key_id,
                         secret_access_key=s3.secret_access_key, serve="presigned")
        async with app_client(settings, store, blobs=signed) as client:
            r = await client.get(f"/{im.id}?fields=thumb_256_url",
                                 headers={"Authorization": f"OAuth {world.client_token}"})
            url = r.json()["thumb_256_url"]
            assert url.startswith(s3.endpoint_url) and "X-Amz-Signature=" in url
            assert httpx.get(url).content == b"\xff\xd8thumb"
