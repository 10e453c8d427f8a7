"""The Content-Security-Policy's parts that depend on configuration: the basemap's origin, and what
POSAPL_MAP_TILES accepts (its host goes into a header, so nothing but a host may get there)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.security_headers import page_policy, tile_origin
from service.settings import ServiceSettings


def test_tile_origin_is_scheme_and_host_with_subdomains_as_a_wildcard() -> None:
    assert tile_origin("https://{s}.tile.example.org/{z}/{x}/{y}.png") == "https://*.tile.example.org"
    assert tile_origin("http://127.0.0.1:8080/tiles/{z}/{x}/{y}.png?key=abc") == "http://127.0.0.1:8080"


def test_page_policy_adds_only_the_tile_origin_to_img_src() -> None:
    plain = page_policy()
    with_tiles = page_policy("https://tiles.example.org/{z}/{x}/{y}.png")
    assert "img-src 'self' data: blob:;" in plain
    assert with_tiles == plain.replace("img-src 'self' data: blob:;", "img-src 'self' data: blob: https://tiles.example.org;")


@pytest.mark.parametrize(
    "template",
    [
        "ftp://tiles.example.org/{z}/{x}/{y}.png",  # not http(s)
        "https://tiles.example.org/{z}/{x}.png",  # no {y}
        "https://tiles.example.org;script-src *;/{z}/{x}/{y}.png",  # a host that would edit the policy
        "https://tiles example.org/{z}/{x}/{y}.png",
        "/{z}/{x}/{y}.png",  # no host
    ],
)
def test_bad_tile_templates_are_refused(template: str) -> None:
    with pytest.raises(ValidationError, match="map_tiles"):
        ServiceSettings(map_tiles=template)


def test_tile_template_accepted_and_empty_means_none() -> None:
    template = "https://{s}.tile.example.org/{z}/{x}/{y}.png"
    assert ServiceSettings(map_tiles=template).map_tiles == template
    assert ServiceSettings(map_tiles="").map_tiles is None
