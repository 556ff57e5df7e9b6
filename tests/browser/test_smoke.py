from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_chromium_renders_the_health_page(live_server, page) -> None:  # type: ignore[no-untyped-def]
    response = page.goto(f"{live_server.url}/healthz")
    assert response is not None and response.status == 200
    assert '"status"' in page.content()
