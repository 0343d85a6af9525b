"""/docs and /redoc render with no network: every asset comes from the server itself."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_page_loads_nothing_from_another_host(api: TestClient, page: str) -> None:
    response = api.get(page)
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert not re.search(r"https?://", response.text), response.text
    assets = ASSET.findall(response.text)
    assert assets, response.text
    for url in assets:
        asset = api.get(url)
        assert asset.status_code == 200, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"]
            assert len(asset.content) > 100_000  # the real bundle, not a stub
        if url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css")


def test_swagger_ui_is_version_5_which_reads_openapi_3_1(api: TestClient) -> None:
    bundle = api.get("/docs-assets/swagger-ui-bundle.js").text
    assert 'PACKAGE_VERSION:"5.' in bundle
    assert "/openapi.json" in api.get("/docs").text
