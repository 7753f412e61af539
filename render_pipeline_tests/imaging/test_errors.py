"""The engine's refusals group by reason: one fixed sentence per cause, named formats, and
nothing particular to the file or the process in it (see refusals.py for the corpus)."""

from __future__ import annotations

import pickle

from render_pipeline.imaging import DecodeLimits, ImageRejected, decode, probe, read_info
from render_pipeline_tests.imaging.refusals import assert_one_group_per_cause, causes, files_of

LIMITS = DecodeLimits(max_bytes=2**20)  # keeps the too-large files small


def _refusal(stage, data: bytes) -> ImageRejected:
    try:
        stage(data, limits=LIMITS)
    except ImageRejected as refused:
        return refused
    raise AssertionError(f"{stage.__name__} accepted a file of the refusal corpus ({data[:16]!r})")


def test_every_cause_of_refusal_is_one_message_in_probe_and_decode() -> None:
    corpus = causes()
    for stage in (probe, decode):
        refusals = [
            (name, refused.code, refused.reason)
            for name, cause in corpus.items()
            for refused in (_refusal(stage, data) for data in files_of(cause, LIMITS.max_bytes))
        ]
        assert_one_group_per_cause(refusals, corpus)


def test_details_keep_what_is_particular_to_the_file() -> None:
    refused = _refusal(read_info, causes()["too-many-pixels"].files[0])
    assert refused.details == {"width": 12_000, "height": 10_000}
    assert _refusal(probe, bytes(LIMITS.max_bytes + 5)).details == {"byte_size": LIMITS.max_bytes + 5}
    damaged = _refusal(probe, causes()["png-data-damaged"].files[0])
    assert damaged.details["decoder_status"] in ("broken data stream", "unrecognized data stream contents")
    copy = pickle.loads(pickle.dumps(refused))  # crosses process boundaries intact
    assert (copy.code, copy.reason, copy.details) == (refused.code, refused.reason, refused.details)
