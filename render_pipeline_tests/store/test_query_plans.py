"""Every runbook and maintenance query has an index to read: with sequential scans priced out,
no plan reads `renders` or `assets` whole.  benchmarks/scale_bench.py times the same queries
(the same catalogue of production calls) at 12 million renders."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from benchmarks import scale_data
from benchmarks.scale_bench import measure, plan_summary
from benchmarks.scale_queries import CATALOGUE

# The exporter's aggregates count every render by design (docs/operations.md, "At a million uploads").
WHOLE_TABLE = {"metrics: render counts per style and status", "metrics: duration histogram"}


def test_runbook_and_maintenance_queries_read_an_index(database_url):
    scale_data.generate(database_url, 300, log=lambda line: None)
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        conn.execute("SET enable_seqscan = off")
        catalogue = [query for query in CATALOGUE(conn) if query.name not in WHOLE_TABLE]
        assert len(catalogue) >= 15
        for query in catalogue:
            result = measure(conn, query, runs=1)
            assert result.plans, query.name
            for plan in result.plans:
                paths = plan_summary(plan)[0]
                assert "SEQ SCAN" not in paths, (query.name, paths)
