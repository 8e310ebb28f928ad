"""/docs works on an air-gapped network: the page and its assets come from this server only."""

from __future__ import annotations

import re


def _references(html: str) -> list[str]:
    """Every URL the page loads or links: src/href attributes and url strings in its inline script."""
    attributes = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    script_urls = re.findall(r"""\b(?:url|oauth2RedirectUrl)\s*:\s*['"]([^'"]+)['"]""", html)
    return attributes + script_urls


def test_docs_reference_no_external_url(client):
    response = client.get("/docs")
    assert response.status_code == 200
    html = response.text
    assert "SwaggerUIBundle" in html
    assert not re.search(r"https?://|//cdn|\bcdn\.", html), re.findall(r"https?://[^\s\"']+", html)
    references = _references(html)
    assert "/openapi.json" in references
    assert any(ref.endswith("swagger-ui-bundle.js") for ref in references)
    assert any(ref.endswith("swagger-ui.css") for ref in references)
    for ref in references:
        assert ref.startswith("/"), ref  # this server
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 0, ref
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")  # Swagger UI 5 reads OpenAPI 3.1


def test_the_bundled_swagger_ui_reads_openapi_3_1():
    from linesight.api.docs import swagger_ui_dir

    folder = swagger_ui_dir()
    version = re.search(r"swagger-ui-(\d+)\.", folder.name)
    assert version is not None, folder
    assert int(version.group(1)) >= 5, folder  # 4.x cannot render an OpenAPI 3.1 schema
    assert (folder / "swagger-ui-bundle.js").stat().st_size > 100_000
