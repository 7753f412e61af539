"""One contract, two implementations: the local directory store and the S3 store on moto's server."""

from __future__ import annotations

from pathlib import Path

import pytest

from render_pipeline.resources.object_store import InvalidKey, ListPage, LocalObjectStore, MissingBucket, ObjectStoreError
from render_pipeline_tests.conftest import make_s3_store
from render_pipeline_tests.reliability.fault_proxy import FaultProxy


def test_put_get_head_delete_round_trip(object_store):
    info = object_store.put("uploads/a1/photo.jpg", b"\xff\xd8payload", content_type="image/jpeg")
    assert info.size == 9 and info.etag

    assert object_store.get("uploads/a1/photo.jpg") == b"\xff\xd8payload"
    head = object_store.head("uploads/a1/photo.jpg")
    assert head is not None and head.size == 9 and head.etag == info.etag

    object_store.delete("uploads/a1/photo.jpg")
    assert object_store.head("uploads/a1/photo.jpg") is None
    with pytest.raises(KeyError):
        object_store.get("uploads/a1/photo.jpg")
    object_store.delete("uploads/a1/photo.jpg")  # deleting twice is fine


def test_batch_helpers_keep_order_and_report_missing_objects(object_store):
    keys = [f"renders/r{i:02d}/output.png" for i in range(12)]
    infos = object_store.put_many([(key, key.encode(), "image/png") for key in keys])
    assert [info.key for info in infos] == keys and all(info.size == len(k) for info, k in zip(infos, keys))

    wanted = [*keys[:5], "renders/missing/output.png", *keys[5:]]
    fetched = list(object_store.prefetch(wanted, ahead=3))
    assert [key for key, _ in fetched] == wanted
    for key, future in fetched:
        if "missing" in key:
            with pytest.raises(KeyError):
                future.result()
        else:
            assert future.result() == key.encode()

    # Any read, not only get (the uploads step reads HEAD, then the bytes):
    sizes = [(key, future.result().size) for key, future in object_store.prefetch(keys[:4], ahead=2,
                                                                                  read=object_store.head)]
    assert sizes == [(key, len(key)) for key in keys[:4]]

    heads = object_store.head_many(wanted)
    assert list(heads) == wanted
    assert heads["renders/missing/output.png"] is None and heads[keys[0]].size == len(keys[0])


def test_put_many_raises_the_first_failure_and_starts_no_new_writes_after_it(object_store):
    queued = [(f"renders/r{i:03d}/a.png", b"a", "image/png") for i in range(1000)]
    objects = [("../escape.png", b"x", "image/png"), *queued]
    with pytest.raises(InvalidKey):
        object_store.put_many(objects)
    written = sum(object_store.head(key) is not None for key, _, _ in objects[1:])
    assert written < 1000  # the writes queued behind the failure were never started


def test_overwrite_changes_etag(object_store):
    first = object_store.put("uploads/a/x.png", b"one")
    second = object_store.put("uploads/a/x.png", b"two-two")
    assert object_store.get("uploads/a/x.png") == b"two-two"
    assert first.etag != second.etag
    assert object_store.head("uploads/a/x.png").etag == second.etag


def test_list_pages_in_key_order_with_cursor(object_store):
    keys = [f"uploads/{name}/f.jpg" for name in ("zeta", "alpha", "Mid", "ünï", "b-c", "b c", "b")]
    for key in keys:
        object_store.put(key, b"x")
    object_store.put("renders/r1/output.png", b"not listed under uploads/")

    seen, cursor, pages = [], None, 0
    while True:
        page = object_store.list_page("uploads/", cursor=cursor, page_size=3)
        assert len(page.objects) <= 3
        seen.extend(o.key for o in page.objects)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(keys, key=lambda k: k.encode())
    assert pages == 3
    assert [o.key for o in object_store.iter_objects("uploads/", page_size=2)] == seen


@pytest.mark.parametrize("pages", [1, 2, 5])
def test_list_pages_reads_the_same_pages_as_list_page(object_store, pages):
    """`list_pages` (one directory read for the local store) pages exactly as `list_page` does."""
    keys = [f"uploads/{name}/f.jpg" for name in ("zeta", "alpha", "Mid", "ünï", "b-c", "b c", "b", "b.d")]
    for key in keys:
        object_store.put(key, b"x")
    one_by_one, cursor = [], "uploads/Mid/f.jpg"
    for _ in range(pages):
        page = object_store.list_page("uploads/", cursor=cursor, page_size=2)
        one_by_one.append(([o.key for o in page.objects], page.next_cursor))
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    together = [([o.key for o in page.objects], page.next_cursor)
                for page in object_store.list_pages("uploads/", cursor="uploads/Mid/f.jpg", page_size=2, pages=pages)]
    assert together == one_by_one


def test_list_resumes_after_a_deleted_cursor_key(object_store):
    for name in "abcdef":
        object_store.put(f"uploads/{name}/f", b"x")
    page = object_store.list_page("uploads/", page_size=2)
    object_store.delete(page.next_cursor)  # the cursor's own key vanishes between pages
    rest = object_store.list_page("uploads/", cursor=page.next_cursor, page_size=10)
    assert [o.key for o in rest.objects] == [f"uploads/{n}/f" for n in "cdef"]


def test_a_store_never_written_to_lists_nothing(object_store):
    """A new bucket, or a local root not created yet: empty pages, not an error."""
    assert object_store.list_page("", page_size=1).objects == []
    assert list(object_store.list_pages("uploads/", pages=3)) == [ListPage(objects=[], next_cursor=None)]


def test_delete_many_reports_deleted_keys(object_store):
    keys = [f"renders/r{i}/output.png" for i in range(5)]
    for key in keys:
        object_store.put(key, b"x")
    result = object_store.delete_many(keys + ["renders/missing/output.png"])
    assert set(keys) <= set(result.deleted)
    assert not result.errors
    assert list(object_store.iter_objects("renders/")) == []


@pytest.mark.parametrize(
    "key",
    ["../escape", "uploads/../../etc/passwd", "/etc/passwd", "uploads/a/\x00.jpg", "uploads//x", "a\\b", "",
     "uploads/" + "x" * 1100],
)
def test_unsafe_keys_are_refused(object_store, key):
    with pytest.raises(InvalidKey):
        object_store.put(key, b"x")


def test_local_store_never_writes_outside_its_root(tmp_path: Path):
    store = LocalObjectStore(root=str(tmp_path / "root"))
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "uploads").symlink_to(tmp_path)  # a symlink pointing out of the root
    with pytest.raises(InvalidKey):
        store.put("uploads/evil.txt", b"x")
    assert not (tmp_path / "evil.txt").exists()


def test_the_usability_check_writes_nothing(object_store):
    object_store.check_usable()
    assert list(object_store.iter_objects("")) == []


def test_the_s3_usability_check_sends_only_reads_inside_the_pipeline_prefixes(s3_endpoint, s3_bucket):
    with FaultProxy(s3_endpoint) as proxy:
        make_s3_store(proxy.url, s3_bucket).check_usable()
        requests = [entry.request for entry in proxy.requests()]
    assert {request.method for request in requests} <= {"HEAD", "GET"}
    assert sorted(request.key for request in requests if request.op == "list") == ["renders/", "uploads/"]


def test_missing_bucket_gives_one_clear_line_and_can_be_created(s3_endpoint):
    store = make_s3_store(s3_endpoint, "no-such-bucket")
    with pytest.raises(MissingBucket, match="bucket 'no-such-bucket' does not exist.*--create-bucket"):
        store.check_usable()
    store.create_bucket()
    store.create_bucket()  # creating the bucket we own again is fine
    store.check_usable()


def test_unreachable_endpoint_fails_fast_with_the_endpoint_named():
    store = make_s3_store("http://127.0.0.1:9", "render-assets", connect_timeout=1, read_timeout=1, max_attempts=1)
    with pytest.raises(ObjectStoreError, match="127.0.0.1:9"):
        store.check_usable()
