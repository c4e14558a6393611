"""GET /api/v1/ab-mcts/visualization/{id}?format=graph: the tree graph in the envelope; the
default (and format=platform) keeps the platform's shape; other formats are a 400."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.api.conftest import run_with_client
from workbench.api import mcts as mcts_api
from workbench.api import mcts_wire
from workbench.api.app import create_app
from workbench.config import Settings
from workbench.mcts.graph import tree_graph

AGENTS = ["planner", "retriever", "synthesizer"]
PATH = "/api/v1/ab-mcts/visualization"


def _app() -> Any:
    return create_app(Settings(admin_token="admin-token-789"))


async def _orchestrate(client: TestClient) -> str:
    body = {
        "userRequest": "summarise",
        "context": {"agents": AGENTS, "taskType": "qa"},
        "options": {"maxIterations": 300, "seed": 7},
    }
    r = await client.post("/api/v1/ab-mcts/orchestrate", json=body)
    assert r.status == 200, await r.text()
    return str((await r.json())["data"]["orchestrationId"])


def test_graph_format_and_the_default_shape() -> None:
    async def scenario(client: TestClient) -> None:
        oid = await _orchestrate(client)
        view = client.app[mcts_api.SERVICE.key].visualization(oid)
        default = await client.get(f"{PATH}/{oid}")
        assert default.status == 200
        doc = await default.json()
        assert doc["success"] is True and doc["data"] == mcts_wire.tree_view(view)
        assert set(doc["data"]) == {"orchestrationId", "nodes", "edges", "metrics"}
        platform = await (await client.get(f"{PATH}/{oid}", params={"format": "platform"})).json()
        assert platform["data"] == doc["data"]

        r = await client.get(f"{PATH}/{oid}", params={"format": "graph"})
        assert r.status == 200
        graph_doc = await r.json()
        assert graph_doc["success"] is True and "requestId" in graph_doc["metadata"]
        data = graph_doc["data"]
        expected = tree_graph(view)
        assert data["format"] == 1 and data["totalNodes"] == view.metrics.total_nodes
        assert data["droppedNodes"] == expected.dropped_nodes
        assert [n["nodeId"] for n in data["nodes"]] == [n.node_id for n in view.nodes]
        assert [n["visits"] for n in data["nodes"]] == [n.visits for n in view.nodes]
        assert [n["meanValue"] for n in data["nodes"]] == [n.score for n in view.nodes]
        assert all(n["score"] is None for n in data["nodes"])
        best = sorted((n for n in view.nodes if n.is_best), key=lambda n: n.depth)
        assert data["bestPath"] == [n.node_id for n in best] and len(best) > 1
        edges = {e.target: e.source for e in view.edges}
        assert all(n["parent"] == edges.get(n["nodeId"], -1) for n in data["nodes"])
        tl = data["timeline"]
        assert tl["wider"] == sum(tl["count"]) and tl["deeper"] == expected.timeline.deeper
        assert tl["steps"] == view.metrics.total_nodes - 1 and tl["depthSum"]

        r = await client.get(f"{PATH}/{oid}", params={"format": "png"})
        assert r.status == 400
        err = (await r.json())["error"]
        assert err["code"] == "VALIDATION_ERROR"
        assert err["details"][0]["field"] == "format"
        assert "'platform'" in err["message"] and "'graph'" in err["message"]

        r = await client.get(f"{PATH}/never-made", params={"format": "graph"})
        assert r.status == 404 and (await r.json())["error"]["code"] == "NOT_FOUND"

    run_with_client(_app(), scenario)


def test_openapi_documents_the_format_parameter() -> None:
    async def scenario(client: TestClient) -> None:
        doc = await (await client.get("/openapi.json")).json()
        op = doc["paths"][f"{PATH}/{{orchestration_id}}"]["get"]
        (fmt,) = [p for p in op["parameters"] if p["in"] == "query"]
        assert fmt["name"] == "format" and fmt["required"] is False
        assert "graph" in fmt["description"] and "platform" in fmt["description"]
        assert "400" in op["responses"]

    run_with_client(_app(), scenario)
