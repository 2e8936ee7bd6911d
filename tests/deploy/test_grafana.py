"""Grafana provisioning and dashboards, checked statically: data sources with fixed uids at the
Compose services, current panel types, datasource references by provisioned uid, valid PromQL,
defined template variables, and the panels the health dashboard promises."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import promql_parser
import pytest
from deploy_util import (
    COMPOSE_FILE,
    DATASOURCES_FILE,
    GRAFANA_BUILTINS,
    datasource_refs,
    iter_panels,
    iter_targets,
    load_dashboards,
    load_yaml,
    metric_names,
    substitute,
    variable_names,
)

#: Panel types of current Grafana (no "graph", "singlestat", "table-old": the legacy Angular ones).
CURRENT_PANEL_TYPES = {"timeseries", "stat", "gauge", "row"}
#: Grafana's own pseudo data source (built-in annotations).
GRAFANA_BUILTIN_DS = "-- Grafana --"

DASHBOARDS = load_dashboards()


@pytest.fixture(scope="module")
def datasources() -> dict[str, dict[str, Any]]:
    return {ds["uid"]: ds for ds in load_yaml(DATASOURCES_FILE)["datasources"]}


def test_dashboards_exist() -> None:
    assert set(DASHBOARDS) == {"tsdb-health.json", "tsdb-explorer.json"}


def test_datasources_point_at_the_compose_services(datasources: dict[str, dict[str, Any]]) -> None:
    services = load_yaml(COMPOSE_FILE)["services"]
    assert set(datasources) == {"tsdb", "prometheus"}
    for uid, ds in datasources.items():
        assert ds["type"] == "prometheus", uid  # tsdb through Grafana's Prometheus data source type
        assert ds["access"] == "proxy", uid  # the Grafana server, not the browser, reaches the service
        url = urlsplit(ds["url"])
        assert url.hostname in services, uid
        published = {str(p).split(":")[-1] for p in services[url.hostname]["ports"]}
        assert str(url.port) in published, uid
    assert urlsplit(datasources["tsdb"]["url"]).hostname == "tsdb"
    assert urlsplit(datasources["prometheus"]["url"]).hostname == "prometheus"
    assert [ds["uid"] for ds in datasources.values() if ds.get("isDefault")] == ["tsdb"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_datasource_reference_is_a_provisioned_uid(name: str, datasources: dict[str, dict[str, Any]]) -> None:
    refs = list(datasource_refs(DASHBOARDS[name]))
    assert refs
    for ref in refs:
        if ref.get("uid") == GRAFANA_BUILTIN_DS:
            continue
        assert ref.get("uid") in datasources, f"{name}: datasource {ref} is not provisioned"
        assert ref.get("type") == datasources[ref["uid"]]["type"], f"{name}: {ref}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_are_current_types_with_uid_datasources(name: str) -> None:
    dash = DASHBOARDS[name]
    assert dash["uid"] == name.removesuffix(".json")
    panels = list(iter_panels(dash))
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for p in panels:
        assert p["type"] in CURRENT_PANEL_TYPES, f"{p['title']}: legacy panel type {p['type']}"
        if p["type"] == "row":
            continue
        assert isinstance(p["datasource"], dict) and p["datasource"]["uid"], p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["refId"] and t["expr"] and isinstance(t["datasource"], dict), p["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in DASHBOARDS[name]["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def _variables(dash: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dash["templating"]["list"]}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_expressions_use_defined_variables_and_parse(name: str) -> None:
    dash = DASHBOARDS[name]
    defined = set(_variables(dash)) | set(GRAFANA_BUILTINS)
    texts = [t.expr for t in iter_targets({name: dash})]
    texts += [p["title"] for p in iter_panels(dash)]
    texts += [v["definition"] for v in _variables(dash).values() if "definition" in v]
    for text in texts:
        assert variable_names(text) <= defined, f"{text!r} uses undefined {variable_names(text) - defined}"
    values: dict[str, str | list[str]] = {n: "x" for n in _variables(dash)}
    values.update({"metric": "some_metric", "group_by": ["a", "b"], "instance": [".*"]})
    for t in iter_targets({name: dash}):
        promql_parser.parse(substitute(t.expr, values))  # raises on invalid PromQL


def test_health_dashboard_covers_what_the_issue_asks() -> None:
    dash = DASHBOARDS["tsdb-health.json"]
    exprs = [t.expr for t in iter_targets({"h": dash})]
    used = set().union(*(metric_names(substitute(e, {"instance": ".*"})) for e in exprs))
    assert {
        "tsdb_samples_ingested_total",  # ingest rate
        "tsdb_samples_rejected_total",  # rejected samples
        "tsdb_query_duration_seconds_bucket",  # query latency
        "process_resident_memory_bytes",  # memory
        "tsdb_compressed_bytes",  # bytes per sample
        "tsdb_sealed_samples",
        "tsdb_series",
        "tsdb_chunks",
    } <= used
    assert any(m.startswith("tsdb_wal_") for m in used) and any(m.startswith("tsdb_snapshot_") for m in used)
    quantiles = {
        e.split("histogram_quantile(", 1)[1].split(",", 1)[0]
        for e in exprs
        if "histogram_quantile(" in e and "tsdb_query_duration_seconds_bucket" in e
    }
    assert {"0.5", "0.95", "0.99"} <= quantiles
    assert {p["type"] for p in iter_panels(dash)} >= {"timeseries", "stat", "gauge"}
    # Health is read from Prometheus: it still works when tsdb is the one in trouble.
    assert {t.datasource_uid for t in iter_targets({"h": dash})} == {"prometheus"}


def test_explorer_has_metric_and_label_variables_over_tsdb() -> None:
    dash = DASHBOARDS["tsdb-explorer.json"]
    variables = _variables(dash)
    metric = variables["metric"]
    assert metric["type"] == "query" and metric["datasource"]["uid"] == "tsdb"
    assert metric["query"]["query"] == metric["definition"] == "label_values(__name__)"
    label_vars = [v for v in variables.values() if v["type"] == "adhoc" or "label_names(" in v.get("definition", "")]
    assert {v["type"] for v in label_vars} == {"adhoc", "query"}
    assert all(v["datasource"]["uid"] == "tsdb" for v in label_vars)
    assert {t.datasource_uid for t in iter_targets({"e": dash})} == {"tsdb"}
    assert all("$metric" in t.expr for t in iter_targets({"e": dash}))
